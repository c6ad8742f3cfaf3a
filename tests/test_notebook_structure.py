"""Every day ends alike (CONTRIBUTING.md, notebook convention 9) and its saved notebook stays
light: exercises with solutions that assert, a recap, references with links, under 400 KB,
and no progress-bar fragments in the saved outputs."""

import json
import re

import pytest

from common.notebooks import REPOSITORY_ROOT

NOTEBOOKS = sorted(REPOSITORY_ROOT.glob("day*/day*.ipynb"))
ENDING = ["## Exercises", "### Solutions", "## Recap", "## References"]
DAYS_WITH_DIAGRAMS = {"day01", "day02", "day04", "day07", "day08", "day09"}


def cells_of(notebook):
    return json.loads(notebook.read_text())["cells"]


def text(cell):
    return "".join(cell["source"])


def heading_positions(cells):
    """The index of the cell holding each ending heading (a line that is exactly it)."""
    positions = {}
    for index, cell in enumerate(cells):
        if cell["cell_type"] == "markdown":
            for line in text(cell).splitlines():
                if line.strip() in ENDING:
                    positions.setdefault(line.strip(), index)
    return positions


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.parent.name)
def test_the_day_ends_with_exercises_solutions_recap_and_references(notebook):
    cells = cells_of(notebook)
    positions = heading_positions(cells)
    assert list(positions) == ENDING, f"{notebook.name}: headings found {list(positions)}"
    assert [positions[h] for h in ENDING] == sorted(positions[h] for h in ENDING)

    exercise_cells = cells[positions["## Exercises"]:positions["### Solutions"]]
    exercises = "\n".join(text(c) for c in exercise_cells if c["cell_type"] == "markdown")
    count = len(re.findall(r"^\d+\. ", exercises, flags=re.MULTILINE))
    assert 2 <= count <= 4, f"{notebook.name}: {count} exercises, expected 2 to 4"

    solutions = [text(c) for c in cells[positions["### Solutions"]:positions["## Recap"]]
                 if c["cell_type"] == "code"]
    asserting = [s for s in solutions if re.search(r"^\s*assert\b|assert_close\(", s, re.MULTILINE)]
    assert len(asserting) >= count, f"{notebook.name}: {len(asserting)} solutions assert, " \
                                    f"{count} exercises"

    recap = "\n".join(text(c) for c in cells[positions["## Recap"]:positions["## References"]])
    assert "**The one idea:**" in recap and "**Next:**" in recap

    references = "\n".join(text(c) for c in cells[positions["## References"]:])
    assert len(re.findall(r"\]\(https?://", references)) >= 2, "references need links"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.parent.name)
def test_saved_notebook_is_light_and_free_of_progress_bars(notebook):
    assert notebook.stat().st_size < 400_000
    for cell in cells_of(notebook):
        for output in cell.get("outputs", []):
            assert "\r" not in "".join(output.get("text", "")), \
                f"{notebook.name}: a progress-bar fragment in a saved output"


@pytest.mark.parametrize("notebook",
                         [n for n in NOTEBOOKS if n.parent.name[:5] in DAYS_WITH_DIAGRAMS],
                         ids=lambda path: path.parent.name)
def test_the_structure_is_drawn_by_code(notebook):
    code = "\n".join(text(c) for c in cells_of(notebook) if c["cell_type"] == "code")
    assert "from common.diagrams import" in code

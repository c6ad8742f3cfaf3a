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


# A line that starts with one of these is read by Markdown as a list item, a heading or a
# quote, even inside $...$: the maths around it then renders as garbled text.
BLOCK_MARKER = re.compile(r"\s*(?:[-+*]\s|\d+[.)]\s|#|>)")


def maths_lines_starting_with_a_block_marker(markdown: str) -> list[str]:
    """The lines of `markdown` that begin inside $...$ or $$...$$ (outside code) with a list,
    heading or quote marker."""
    found, inside, in_code = [], False, False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        if inside and BLOCK_MARKER.match(line):
            found.append(line)
        text = re.sub(r"`[^`]*`", "", line).replace(r"\$", "")
        inside ^= len(re.findall(r"\$\$|\$", text)) % 2 == 1
    return found


def test_the_maths_line_check_finds_a_marker_inside_maths_and_only_there():
    assert maths_lines_starting_with_a_block_marker(
        "post-norm: $z = \\mathrm{LN}(z\n  + F(z))$. More text") == ["  + F(z))$. More text"]
    assert maths_lines_starting_with_a_block_marker("$$a\n- b$$") == ["- b$$"]
    assert maths_lines_starting_with_a_block_marker("$a$ and\n- a real list item") == []
    assert maths_lines_starting_with_a_block_marker("`$` in code\n- item") == []


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.parent.name)
def test_no_maths_line_starts_with_a_list_or_block_marker(notebook):
    for index, cell in enumerate(cells_of(notebook)):
        if cell["cell_type"] == "markdown":
            bad = maths_lines_starting_with_a_block_marker(text(cell))
            assert not bad, f"{notebook.name}, cell {index}: maths lines {bad} start with a " \
                            f"list or block marker; move it to the end of the line before"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.parent.name)
def test_no_control_character_hides_in_a_cell(notebook):
    """A "\\a" written through a Python string becomes the bell character: Day 10's $\\alpha$
    once rendered as "lpha"."""
    for index, cell in enumerate(cells_of(notebook)):
        bad = sorted({hex(ord(c)) for c in text(cell) if ord(c) < 32 and c not in "\n\t"})
        assert not bad, f"{notebook.name}, cell {index}: control characters {bad}"

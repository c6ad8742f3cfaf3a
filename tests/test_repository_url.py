"""The repository's address is one setting, pyproject's [project.urls] Repository; every
Colab badge and every notebook's setup cell must agree with it."""

import json
import re
import tomllib

import pytest

from common.notebooks import REPOSITORY_ROOT, day_notebooks

REPOSITORY = tomllib.loads((REPOSITORY_ROOT / "pyproject.toml").read_text())[
    "project"]["urls"]["Repository"]
GITHUB_PATH = REPOSITORY.removeprefix("https://github.com/")
COLAB_LINK = re.compile(r"https://colab\.research\.google\.com/github/([^)\s\"']+)")
SETUP_URL = re.compile(r"^REPOSITORY = \"([^\"]+)\"$", re.MULTILINE)
NOTEBOOKS = day_notebooks()


def test_the_setting_is_a_github_address():
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", REPOSITORY), REPOSITORY


def colab_target(notebook):
    return f"{GITHUB_PATH}/blob/main/{notebook.relative_to(REPOSITORY_ROOT).as_posix()}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.parent.name for p in NOTEBOOKS])
def test_notebook_badge_and_setup_cell_use_the_setting(notebook):
    cells = json.loads(notebook.read_text())["cells"]
    markdown = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert COLAB_LINK.findall(markdown) == [colab_target(notebook)], (
        f"{notebook.name}: expected one Colab badge linking to {colab_target(notebook)}")
    assert SETUP_URL.findall(code) == [REPOSITORY], (
        f"{notebook.name}: the setup cell must set REPOSITORY = \"{REPOSITORY}\"")
    assert '"google.colab" in sys.modules' in code, f"{notebook.name}: no Colab setup cell"


def test_readme_badges_use_the_setting_and_point_at_notebooks():
    links = COLAB_LINK.findall((REPOSITORY_ROOT / "README.md").read_text())
    assert sorted(links) == sorted(colab_target(nb) for nb in NOTEBOOKS), (
        "README.md must have one Colab badge per day notebook, built from " + REPOSITORY)


LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.parent.name for p in NOTEBOOKS])
def test_links_between_notebooks_are_absolute_and_point_at_files_that_exist(notebook):
    """Relative links break in Colab, which opens one notebook alone: links to the repository's
    files are absolute GitHub addresses built from the one setting, and their targets exist."""
    cells = json.loads(notebook.read_text())["cells"]
    markdown = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    for target in LINK.findall(markdown):
        assert target.startswith(("https://", "http://", "#")), (
            f"{notebook.name}: relative link {target}; use {REPOSITORY}/blob/main/...")
        if target.startswith(f"{REPOSITORY}/blob/main/"):
            path = target.removeprefix(f"{REPOSITORY}/blob/main/").split("#")[0]
            assert (REPOSITORY_ROOT / path).exists(), f"{notebook.name}: {target} points nowhere"

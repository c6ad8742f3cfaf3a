"""`pip install .` (and `pip install git+URL` in Colab) must ship common and every day."""

import tomllib

from setuptools import find_packages

from common.notebooks import REPOSITORY_ROOT

PYPROJECT = tomllib.loads((REPOSITORY_ROOT / "pyproject.toml").read_text())


def test_every_day_and_common_are_packages_that_pyproject_ships():
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    shipped = set(find_packages(where=REPOSITORY_ROOT, include=include))
    folders = {p.name for p in REPOSITORY_ROOT.iterdir()
               if p.is_dir() and (p.name == "common" or p.name.startswith("day"))}
    assert folders and folders <= shipped, f"not shipped: {sorted(folders - shipped)}"
    assert "tests" not in shipped


def test_package_dependencies_stay_light_and_leave_torch_unpinned():
    dependencies = PYPROJECT["project"]["dependencies"]
    torch = [d for d in dependencies if d.startswith("torch")]
    assert torch and "==" not in torch[0], "an exact torch pin would make Colab reinstall it"
    assert not any(d.startswith(("transformers", "triton", "jupyter")) for d in dependencies)


def test_requirements_leave_torch_unpinned_and_install_the_repository():
    lines = [line.split("#")[0].strip()
             for line in (REPOSITORY_ROOT / "requirements.txt").read_text().splitlines()]
    torch = [line for line in lines if line.startswith("torch")]
    assert torch and "==" not in torch[0], torch
    assert "-e . --config-settings editable_mode=compat" in lines


def test_the_server_libraries_are_an_extra_that_requirements_install():
    """Day 10's server is a learner's code: the package declares what it needs, as an extra."""
    extra = PYPROJECT["project"]["optional-dependencies"]["serving"]
    lines = {line.split("#")[0].strip()
             for line in (REPOSITORY_ROOT / "requirements.txt").read_text().splitlines()}
    assert set(extra) == {"fastapi", "uvicorn", "httpx"} and set(extra) <= lines

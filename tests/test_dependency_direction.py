"""CONTRIBUTING.md's dependency direction: common's infrastructure imports no day, a day imports
only earlier days, and no day imports the collection `common.layers`."""

import ast
import json
import re

import pytest

from common.notebooks import REPOSITORY_ROOT

DAY = re.compile(r"day(\d+)_")


def source_of(path):
    """The Python source of a module, or of a notebook's code cells (without magics)."""
    if path.suffix != ".ipynb":
        return path.read_text()
    cells = json.loads(path.read_text())["cells"]
    lines = [line for cell in cells if cell["cell_type"] == "code"
             for line in "".join(cell["source"]).splitlines()
             if not line.lstrip().startswith(("%", "!"))]
    return "\n".join(lines)


def imported_modules(path):
    """Absolute module names imported by the Python file or notebook at `path`."""
    names = set()
    for node in ast.walk(ast.parse(source_of(path), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def day_number(name):
    match = DAY.match(name)
    return int(match.group(1)) if match else None


SOURCES = sorted(p for pattern in ("*/*.py", "*/*.ipynb") for p in REPOSITORY_ROOT.glob(pattern)
                 if p.parent.name == "common" or day_number(p.parent.name) is not None)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_imports_follow_the_dependency_direction(path):
    imports = imported_modules(path)
    imported_days = {day_number(name) for name in imports} - {None}
    if path.parent.name == "common":
        if path.name != "layers.py":
            assert not imported_days, f"common/{path.name} is infrastructure and imports a day"
        return
    own_day = day_number(path.parent.name)
    later = sorted(d for d in imported_days if d > own_day)
    assert not later, f"{path.parent.name}/{path.name} imports later days {later}"
    assert not any(name == "common.layers" or name.startswith("common.layers.")
                   for name in imports), f"{path.parent.name}/{path.name} imports common.layers"


def test_the_check_sees_imports():
    """Guard against a vacuous test: this file's own imports are found."""
    assert "common.notebooks.REPOSITORY_ROOT" in imported_modules(REPOSITORY_ROOT / "tests" /
                                                                  "test_dependency_direction.py")
    assert SOURCES, "no source files found"

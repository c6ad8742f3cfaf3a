"""The notebooks are the source of truth: every committed module must be exactly what its
notebook generates, and every generated module must still have a notebook."""

import pytest

from common.notebooks import GENERATED_HEADER, REPOSITORY_ROOT, day_notebooks, export_notebook

NOTEBOOKS = day_notebooks()


def test_every_day_has_a_notebook():
    days = sorted(p for p in REPOSITORY_ROOT.glob("day*") if p.is_dir())
    assert days, "no day folders found"
    missing = [d.name for d in days if not list(d.glob("*.ipynb"))]
    assert not missing, f"day folders without a notebook: {missing}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.parent.name for p in NOTEBOOKS])
def test_committed_modules_match_their_notebook(notebook, tmp_path):
    generated = export_notebook(notebook, tmp_path)
    assert generated, f"{notebook.name} exports no module (no `#| export` cell?)"
    for module in generated:
        committed = notebook.parent / module.name
        assert committed.exists(), (f"{committed.relative_to(REPOSITORY_ROOT)} is missing: run "
                                    "`python -m common.notebooks export`")
        assert committed.read_text() == module.read_text(), (
            f"{committed.relative_to(REPOSITORY_ROOT)} differs from what {notebook.name} "
            "generates: edit the notebook, then run `python -m common.notebooks export`")


def test_every_generated_module_has_a_notebook(tmp_path):
    expected = {notebook.parent / module.name
                for notebook in NOTEBOOKS
                for module in export_notebook(notebook, tmp_path / notebook.parent.name)}
    generated = {p for p in REPOSITORY_ROOT.glob("*/*.py")
                 if p.read_text().startswith(GENERATED_HEADER)}
    orphans = sorted(str(p.relative_to(REPOSITORY_ROOT)) for p in generated - expected)
    assert not orphans, f"generated modules that no notebook generates: {orphans}"


def test_the_command_without_arguments_prints_its_usage(capsys):
    from common import notebooks

    with pytest.raises(SystemExit) as stopped:
        notebooks.main([])
    assert stopped.value.code == 2
    assert "python -m common.notebooks export" in capsys.readouterr().err


def test_the_command_says_so_when_it_finds_no_notebooks(monkeypatch, tmp_path, capsys):
    """In a regular install the notebooks are not beside the modules: fail, don't do nothing."""
    from common import notebooks

    monkeypatch.setattr(notebooks, "day_notebooks", lambda: [])
    monkeypatch.setattr(notebooks, "REPOSITORY_ROOT", tmp_path)
    with pytest.raises(SystemExit) as stopped:
        notebooks.main(["export"])
    assert stopped.value.code == 1
    assert "no day notebooks" in capsys.readouterr().err


@pytest.mark.parametrize("text, words", [("{}", ["missing a key: cells"]),
                                          ("not json", ["does not appear to be JSON"])])
def test_a_file_that_is_not_a_notebook_is_a_usage_error(tmp_path, capsys, text, words):
    """Refused before anything runs, naming the file and why (a schema traceback before)."""
    from common import notebooks

    path = tmp_path / "broken.ipynb"
    path.write_text(text)
    with pytest.raises(SystemExit) as stopped:
        notebooks.main(["execute", str(path)])
    error = capsys.readouterr().err
    assert stopped.value.code == 2 and "broken.ipynb is not a valid notebook" in error
    assert all(word in error for word in words)


def test_reseed_replaces_a_seeds_statement_that_spans_lines():
    """Only its first line was replaced, leaving a syntax error reported as a failing seed."""
    from common.notebooks import replace_seeds

    source = "x = 1\nSEEDS = (0,\n         1, 2)\nassert len(SEEDS) >= 2\n"
    assert replace_seeds(source, (5, 6)) == (
        "x = 1\nSEEDS = (5, 6)\nassert len(SEEDS) >= 2\n", 1)
    assert replace_seeds("%time y = 2\nSEEDS = (0,)\n", (3,)) == ("%time y = 2\nSEEDS = (3,)\n", 1)
    assert replace_seeds("def f():\n    SEEDS = 1\n", (3,))[1] == 0


@pytest.mark.parametrize("source, expected", [
    ("SEEDS = (0, 1); WIDTH = 5\nprint(WIDTH)\n", "SEEDS = (3,); WIDTH = 5\nprint(WIDTH)\n"),
    ("SEEDS = BASE = (0, 1)\n", "SEEDS = BASE = (3,)\n"),
    ("label = 'ü'; SEEDS = (1,)\n", "label = 'ü'; SEEDS = (3,)\n"),
])
def test_reseed_replaces_only_the_value(source, expected):
    """The statement's whole line was replaced, dropping `; WIDTH = 5` without a word."""
    from common.notebooks import replace_seeds

    assert replace_seeds(source, (3,)) == (expected, 1)


def test_reseed_parses_cells_with_magics():
    """A magic made the cell unparsable; the one-line fallback cut a multi-line SEEDS."""
    from common.notebooks import replace_seeds

    assert replace_seeds("%time x = 1\nSEEDS = (0,\n         1)\nprint(SEEDS)", (5, 6)) == (
        "%time x = 1\nSEEDS = (5, 6)\nprint(SEEDS)", 1)
    assert replace_seeds("for i in range(2):\n    !ls\nSEEDS = (0,)\n", (3,))[1] == 1

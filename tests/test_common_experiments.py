"""Paired differences over seeds, and running a notebook's experiment on other seeds."""
import argparse
import statistics

import nbformat
import pytest
from nbclient.exceptions import CellExecutionError

from common.experiments import paired_difference
from common.notebooks import has_seeds, reseed_notebook, seeds_argument
from common.testing import assert_error_names


def test_paired_difference_is_the_mean_and_deviation_of_the_differences():
    first, second = [0.9, 0.8, 0.85, 0.7], [0.8, 0.82, 0.8, 0.72]
    differences = [a - b for a, b in zip(first, second, strict=True)]
    result = paired_difference(first, second)
    assert result.mean == pytest.approx(statistics.fmean(differences))
    assert result.std == pytest.approx(statistics.stdev(differences))
    assert result.count == 4
    assert result.standard_error == pytest.approx(result.std / 2)


def test_detectable_means_more_than_two_standard_errors_from_zero():
    # Differences 1, 1, 1, 1, 3: mean 1.4, std 0.894, standard error 0.4 -> 3.5 errors away.
    assert paired_difference([1, 1, 1, 1, 3], [0] * 5).detectable
    # Differences -1, 1, -1, 1, 0.5: mean 0.1, far within two standard errors.
    assert not paired_difference([-1, 1, -1, 1, 0.5], [0] * 5).detectable
    assert paired_difference([0.5, 0.5], [0.5, 0.5]).describe(100, " points") == (
        "+0.0 ± 0.0 points")
    assert paired_difference([0.51, 0.52], [0.5, 0.5]).describe(100) == "+1.5 ± 0.7"


@pytest.mark.parametrize("first, second, words", [
    ([1.0], [0.0], ["at least 2 seeds", "1"]),
    ([1.0, 2.0], [0.0], ["one value per seed", "2 and 1"]),
    ([1.0, float("nan")], [0.0, 0.0], ["first[1]", "finite"]),
    ([1e308, -1e308], [-1e308, 1e308], ["overflows"]),
])
def test_paired_difference_refuses_what_it_cannot_summarise(first, second, words):
    assert_error_names(lambda: paired_difference(first, second), words)


def test_paired_difference_wants_sequences_of_numbers():
    assert_error_names(lambda: paired_difference("12", "34"), ["first", "sequence"], TypeError)
    assert_error_names(lambda: paired_difference([1, "2"], [1, 2]), ["first[1]", "number"],
                       TypeError)


@pytest.mark.parametrize("text, seeds", [("5-9", (5, 6, 7, 8, 9)), ("3", (3,)),
                                         ("0,4,11", (0, 4, 11))])
def test_seeds_read_as_a_range_or_a_list(text, seeds):
    assert seeds_argument(text) == seeds


@pytest.mark.parametrize("text", ["", "x", "9-5", "1,,2", "-1", "1.5", "0-99999999999",
                                  str(2**64)])
def test_seeds_that_are_not_seeds_are_refused(text):
    with pytest.raises(argparse.ArgumentTypeError, match="seeds must be"):
        seeds_argument(text)


def _notebook(path, *sources):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    nbformat.write(notebook, path)
    return path


def test_reseed_runs_a_copy_on_other_seeds_and_leaves_the_notebook_alone(tmp_path):
    path = _notebook(tmp_path / "experiment.ipynb", "SEEDS = (0, 1, 2)",
                     "assert all(seed < 6 for seed in SEEDS), SEEDS\nprint(sum(SEEDS))")
    before = path.read_text()
    output = reseed_notebook(path, (3, 4, 5), tmp_path / "copy.ipynb")
    assert path.read_text() == before and has_seeds(path)
    executed = nbformat.read(output, as_version=4)
    assert executed.cells[0].source == "SEEDS = (3, 4, 5)"
    assert executed.cells[1].outputs[0]["text"] == "12\n"
    # A claim that fails on the new seeds fails the run, and the copy shows where.
    with pytest.raises(CellExecutionError, match="AssertionError"):
        reseed_notebook(path, (5, 6), tmp_path / "failed.ipynb")
    failed = nbformat.read(tmp_path / "failed.ipynb", as_version=4)
    assert failed.cells[1].outputs[-1]["ename"] == "AssertionError"


def test_reseed_refuses_a_notebook_without_seeds(tmp_path):
    path = _notebook(tmp_path / "plain.ipynb", "seeds = (0, 1)", "print(1)")
    assert not has_seeds(path)
    assert_error_names(lambda: reseed_notebook(path, (1,)), ["plain.ipynb", "SEEDS = ..."])


def test_repeated_seeds_and_overflowing_spreads_are_refused():
    with pytest.raises(argparse.ArgumentTypeError, match="distinct"):
        seeds_argument("0,0")
    assert_error_names(lambda: paired_difference([1.7e308, -1.7e308], [0, 0]), ["overflows"])


def test_describe_checks_its_scale_and_unit():
    difference = paired_difference([0.9, 0.8, 0.85], [0.7, 0.75, 0.8])
    assert_error_names(lambda: difference.describe(scale="100"), ["scale", "str"], TypeError)
    assert_error_names(lambda: difference.describe(100, 5), ["unit", "int"], TypeError)

"""common.benchmark: the measuring code every day that times or weighs something uses."""

import argparse
import contextlib
import json
import math

import numpy as np
import pytest
import torch

from common import benchmark as bench
from common.testing import assert_error_names


def test_cpu_timing_reports_the_spread_of_at_least_the_minimum_runs():
    calls = []
    timing = bench.time_cpu(lambda: calls.append(1), min_seconds=0.0, min_runs=5)
    assert len(calls) == 5
    assert 0 <= timing["ms_min"] <= timing["ms"] <= timing["ms_max"]


def test_cpu_timing_stops_at_max_runs_and_refuses_more(monkeypatch):
    calls = []

    def run():
        calls.append(1)
        if len(calls) > bench.MAX_RUNS:
            pytest.fail("time_cpu ran past MAX_RUNS")

    monkeypatch.setattr(bench.time, "perf_counter", lambda: 0.0)  # min_seconds never passes
    bench.time_cpu(run, min_seconds=1.0, min_runs=1)
    assert len(calls) == bench.MAX_RUNS == 10_000
    calls.clear()
    assert_error_names(lambda: bench.time_cpu(run, min_seconds=0, min_runs=10 ** 9),
                       ["min_runs", "10000", "1000000000"])
    assert not calls


def test_timing_refuses_what_it_cannot_call_before_calling_anything():
    assert_error_names(lambda: bench.time_cpu(None), ["run must be callable", "None"],
                       TypeError)
    calls = []
    assert_error_names(lambda: bench.interleaved_minimum_ms({"a": lambda: calls.append(1),
                                                             "b": None}),
                       ["runs['b'] must be callable", "None"], TypeError)
    assert not calls  # "a" was not warmed up before "b" was refused


def test_measure_warms_up_resets_after_each_call_and_has_no_cpu_memory():
    calls, resets = [], []
    result = bench.measure(lambda: calls.append(1), "cpu", lambda: resets.append(1))
    assert len(calls) == len(resets) >= 4  # a warm-up call and at least three timed
    assert result["peak_mib"] is None and result["ms_min"] <= result["ms"] <= result["ms_max"]


@pytest.mark.parametrize("device, kind", [("cpu", "cpu"), (torch.device("cpu"), "cpu"),
                                          ("cuda", "cuda"), ("cuda:1", "cuda"),
                                          (torch.device("cuda"), "cuda"),
                                          (torch.device("cuda", 0), "cuda")])
def test_a_device_is_a_string_or_a_torch_device_alike(device, kind):
    assert bench.device_kind(device) == kind


@pytest.mark.parametrize("device, error, words", [
    ("gpu", ValueError, "'gpu'"), ("meta", ValueError, "'meta'"),
    (torch.device("meta"), ValueError, "'meta'"), ("", ValueError, "''"),
    (0, TypeError, "0 (int)"), (None, TypeError, "None")])
def test_an_unknown_device_is_refused_by_every_measuring_function(device, error, words):
    for call in (lambda: bench.device_kind(device), lambda: bench.measure(lambda: None, device),
                 lambda: bench.release_memory(device), lambda: bench.environment(device)):
        with pytest.raises(error, match="device must be") as info:
            call()
        assert words in str(info.value)


@pytest.mark.parametrize("device", [torch.device("cuda"), "cuda", "cuda:0"])
def test_a_cuda_device_takes_the_cuda_branch_however_it_is_given(device, monkeypatch):
    """Without a GPU: the CUDA timers replaced by fakes that record that they were called."""
    calls = []
    monkeypatch.setattr(bench.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(bench, "_cuda_index", lambda device: 0)
    monkeypatch.setattr(bench.torch.cuda, "device", lambda index: contextlib.nullcontext())
    monkeypatch.setattr(bench, "peak_cuda_mib", lambda run, device: calls.append("peak") or 1.5)
    monkeypatch.setattr(bench, "time_cuda", lambda run, grad_to_none: calls.append("time") or {
        "ms": 2.0, "ms_min": 1.0, "ms_max": 3.0})
    monkeypatch.setattr(bench, "time_cpu", lambda run: pytest.fail("took the CPU branch"))
    result = bench.measure(lambda: None, device)
    assert calls == ["peak", "time"] and result["peak_mib"] == 1.5 and result["ms"] == 2.0


def test_a_cpu_device_object_takes_the_cpu_branch(monkeypatch):
    monkeypatch.setattr(bench, "time_cuda", lambda *args: pytest.fail("took the CUDA branch"))
    assert bench.measure(lambda: None, torch.device("cpu"))["peak_mib"] is None


def test_measure_on_cuda_without_cuda_says_so_before_running(monkeypatch):
    monkeypatch.setattr(bench.torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="needs CUDA"):
        bench.measure(lambda: pytest.fail("ran"), "cuda")


def test_json_keys_that_collide_a_cycle_and_huge_rounds_are_refused(tmp_path):
    with pytest.raises(ValueError, match="keys that JSON writes alike"):
        bench.write_json(tmp_path / "keys.json", {1: "int", "1": "str"})
    looped = {"a": []}
    looped["a"].append(looped)
    with pytest.raises(ValueError, match="contains itself"):
        bench.write_json(tmp_path / "loop.json", looped)
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="rounds must be at most"):
        bench.interleaved_minimum_ms({"a": lambda: None}, rounds=10**18)
    with pytest.raises(TypeError, match="module must be callable"):
        bench.counted_flops(None)
    with pytest.raises(TypeError, match="run must be callable"):
        bench.peak_tensor_bytes(5)
    with pytest.raises(TypeError, match="folder must be a path"):
        bench.save_rows([{"a": 1}], {}, None)


def test_measure_refuses_what_it_cannot_call():
    with pytest.raises(TypeError, match="run must be callable, got None"):
        bench.measure(None, "cpu")
    with pytest.raises(TypeError, match="reset must be callable"):
        bench.measure(lambda: None, "cpu", reset=3)


def test_interleaved_minimum_takes_turns_and_keeps_the_fastest_call(monkeypatch):
    calls = []
    clock = iter(range(0, 1000))  # each perf_counter() call: one more second
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(clock))
    fastest = bench.interleaved_minimum_ms({"a": lambda: calls.append("a"),
                                            "b": lambda: calls.append("b")}, rounds=3)
    assert calls == ["a", "b"] + ["a", "b"] * 3  # a warm-up each, then turns
    assert fastest == {"a": 1000.0, "b": 1000.0}
    with pytest.raises(TypeError, match=r"runs\['b'\] must be callable"):
        bench.interleaved_minimum_ms({"a": lambda: None, "b": 3})
    with pytest.raises(ValueError, match="rounds must be a positive int"):
        bench.interleaved_minimum_ms({"a": lambda: None}, rounds=0)


def test_out_of_memory_is_recognised():
    assert bench.is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert bench.is_out_of_memory(RuntimeError("cuDNN error: ... out of memory"))
    assert not bench.is_out_of_memory(RuntimeError("shape mismatch"))


def test_environment_names_the_cpu_and_the_versions():
    info = bench.environment("cpu")
    assert info["device"] == "cpu" and info["torch"] == torch.__version__
    assert info["device_name"] and info["threads"] == torch.get_num_threads()


def test_rows_are_saved_as_json_and_csv(tmp_path):
    rows = [{"method": "a", "ms": 1.5, "status": "ok"},
            {"method": "b", "ms": None, "status": "OOM", "note": "out of memory"}]
    json_path, csv_path = bench.save_rows(rows, {"device": "cpu"}, tmp_path / "new")
    assert json.loads(json_path.read_text()) == {"metadata": {"device": "cpu"}, "rows": rows}
    assert csv_path.read_text().splitlines()[0] == "method,ms,status,note"
    assert not list((tmp_path / "new").glob("*.partial"))
    with pytest.raises(ValueError, match="rows"):
        bench.save_rows([], {}, tmp_path)


def strict_json(path):
    """The file's JSON, refusing NaN and Infinity, which JSON does not have."""
    return json.loads(path.read_text(), parse_constant=lambda word: pytest.fail(word))


def test_nan_and_infinities_are_written_as_null_and_empty_cells(tmp_path):
    rows = [{"method": "a", "ms": math.nan, "speedup": math.inf, "shape": (1, 2)},
            {"method": "b", "ms": 1.5, "speedup": -math.inf, "shape": None}]
    json_path, csv_path = bench.save_rows(rows, {"error": math.nan}, tmp_path)
    assert strict_json(json_path) == {"metadata": {"error": None}, "rows": [
        {"method": "a", "ms": None, "speedup": None, "shape": [1, 2]},
        {"method": "b", "ms": 1.5, "speedup": None, "shape": None}]}
    assert csv_path.read_text().splitlines()[1:] == ["a,,,\"[1, 2]\"", "b,1.5,,"]
    path = bench.write_json(tmp_path / "check.json", {"checks": [{"error": math.nan}]})
    assert strict_json(path) == {"checks": [{"error": None}]}


@pytest.mark.parametrize("rows, metadata, words", [
    ([{"ms": 1.0}, {"ms": 2.0}, {"ms": 3.0}, {"ms": torch.tensor(4.0)}], {},
     ['rows[3]["ms"]', "tensor of shape ()"]),
    ([{"ms": 1.0}], {"seeds": {1, 2}}, ['metadata["seeds"]', "{1, 2} (set)"]),
    ([{"ms": 1.0}], {"by": {(1, 2): 3}}, ['metadata["by"]', "(1, 2) (tuple)"]),
    ([{"ms": 1.0}, 2], {}, ["rows[1]", "2 (int)"]),
])
def test_a_value_json_cannot_hold_is_named_and_nothing_is_written(tmp_path, rows, metadata,
                                                                   words):
    folder = tmp_path / "new"
    assert_error_names(lambda: bench.save_rows(rows, metadata, folder), words, TypeError)
    assert not folder.exists()
    bench.save_rows([{"ms": 1.0}], {}, tmp_path)
    before = {path.name: path.read_text() for path in tmp_path.iterdir() if path.is_file()}
    assert_error_names(lambda: bench.save_rows(rows, metadata, tmp_path), words, TypeError)
    after = {path.name: path.read_text() for path in tmp_path.iterdir() if path.is_file()}
    assert after == before  # the previous JSON and CSV, and no .partial file


def test_write_json_names_the_key_path_and_keeps_the_previous_file(tmp_path):
    path = bench.write_json(tmp_path / "sweep.json", {"runs": []})
    assert_error_names(lambda: bench.write_json(path, {"runs": [{"seed": 0, "curve": {
        "125": torch.ones(2)}}]}), ['runs[0]["curve"]["125"]', "tensor of shape (2,)"],
                       TypeError)
    assert [p.name for p in tmp_path.iterdir()] == ["sweep.json"]
    assert strict_json(path) == {"runs": []}


def test_a_failed_write_leaves_no_partial_file(tmp_path):
    (tmp_path / "results.json").mkdir()  # a folder in the way: the rename fails
    with pytest.raises(OSError):
        bench.write_json(tmp_path / "results.json", {"a": 1})
    assert [path.name for path in tmp_path.iterdir()] == ["results.json"]
    assert_error_names(lambda: bench.write_json(tmp_path / "x.json", [1]),
                       ["payload", "dict", "[1] (list)"], TypeError)


def test_plots_skip_a_quantity_that_no_row_has(tmp_path):
    rows = [{"method": m, "n": n, "ms": n * (i + 1), "peak_mib": None, "d": 64}
            for i, m in enumerate("ab") for n in (128, 256)]
    path = bench.plot_panels(rows, tmp_path / "time.png", "ms", "time (ms)", "n",
                             lambda r: (r["d"],), lambda key: f"d={key[0]}")
    assert path.stat().st_size > 0
    assert bench.plot_panels(rows, tmp_path / "memory.png", "peak_mib", "MiB", "n",
                             lambda r: (r["d"],), str) is None
    assert not (tmp_path / "memory.png").exists()


def test_table_shows_figures_or_the_status_and_note():
    columns = [("method", "method", ""), ("ms", "ms", ".2f")]
    table = bench.format_table([{"method": "a", "ms": 1.234, "status": "ok"},
                                {"method": "b", "ms": None, "status": "OOM", "note": "no room"}],
                               columns)
    lines = table.splitlines()
    assert "1.23" in lines[2] and "OOM  no room" in lines[3]


def test_cpu_threads_default_to_one_and_refuse_bad_counts():
    before = torch.get_num_threads()
    try:
        assert bench.set_cpu_threads(None) == 1 and torch.get_num_threads() == 1
        with pytest.raises(ValueError, match="threads"):
            bench.set_cpu_threads(0)
    finally:
        torch.set_num_threads(before)


def test_argument_types_refuse_what_cannot_be_right(tmp_path):
    assert bench.positive_int_argument("3") == 3
    for text in ("0", "-1", "1.5", "x"):
        with pytest.raises(argparse.ArgumentTypeError, match="positive int"):
            bench.positive_int_argument(text)
    file = tmp_path / "a.json"
    file.write_text("")
    assert bench.output_folder_argument(str(tmp_path / "new")) == tmp_path / "new"
    with pytest.raises(argparse.ArgumentTypeError, match="is a file"):
        bench.output_folder_argument(str(file))


@pytest.mark.parametrize("text, words", [("", "empty path"), ("/etc/hostname/sub",
                                                             "not a writable folder")])
def test_output_folder_refuses_what_cannot_hold_results(text, words):
    with pytest.raises(argparse.ArgumentTypeError, match=words):
        bench.output_folder_argument(text)


def test_held_tensor_bytes_counts_what_outlives_the_call():
    a = torch.randn(100, 100)
    assert bench.held_tensor_bytes(lambda: (a @ a, a + 1)[0]) == 100 * 100 * 4  # a + 1 is freed
    weight = torch.randn(100, 100, requires_grad=True)
    # autograd keeps tanh's output for the backward pass: the product is freed, the result held
    assert bench.held_tensor_bytes(lambda: torch.tanh(a @ weight)) == 100 * 100 * 4
    # exp's output is both the result and what autograd saved: one storage, counted once
    assert bench.held_tensor_bytes(lambda: torch.exp(a @ weight).sum()) == 100 * 100 * 4 + 4
    with pytest.raises(TypeError, match="run must be callable"):
        bench.held_tensor_bytes(3)


def test_peak_tensor_bytes_counts_what_a_call_holds_at_its_peak():
    a, b = torch.randn(100, 100), torch.randn(100, 100)
    assert bench.peak_tensor_bytes(lambda: a @ b) == 100 * 100 * 4  # the output only

    def chain():
        x = torch.randn(100, 100)
        for _ in range(5):
            x = x * 2  # the old tensor is freed once the new one exists: two at a time
        return x

    assert bench.peak_tensor_bytes(chain) == 2 * 100 * 100 * 4

    def in_place_and_views():
        x = torch.randn(100, 100)
        x.mul_(2)
        return x.view(-1)[:10]

    assert bench.peak_tensor_bytes(in_place_and_views) == 100 * 100 * 4
    scores = bench.peak_tensor_bytes(lambda: torch.randn(1, 64, 8) @ torch.randn(1, 8, 64))
    assert scores == (64 * 8 * 2 + 64 * 64) * 4


def test_the_second_fresh_misuse_of_the_writers_is_named(tmp_path):
    with pytest.raises(ValueError, match="stem must be a file name"):
        bench.save_rows([{"a": 1}], {}, tmp_path, stem=None)
    (tmp_path / "afile").write_text("")
    with pytest.raises(ValueError, match="folder must be a folder"):
        bench.save_rows([{"a": 1}], {}, tmp_path / "afile")
    with pytest.raises(TypeError, match="path must be a file path"):
        bench.write_json(None, {"a": 1})
    with pytest.raises(ValueError, match="meta tensors"):
        bench.peak_tensor_bytes(lambda: torch.ones(1000, device="meta") + 1)


def test_numpy_bools_nan_keys_and_deep_nesting_are_handled(tmp_path):
    bench.write_json(tmp_path / "bool.json", {"a": np.bool_(True)})
    assert json.loads((tmp_path / "bool.json").read_text()) == {"a": True}
    with pytest.raises(ValueError, match="NaN or infinity"):
        bench.write_json(tmp_path / "nan.json", {float("nan"): 1})
    deep = current = {}
    for _ in range(3000):
        current["a"] = {}
        current = current["a"]
    with pytest.raises(ValueError, match="nested deeper"):
        bench.write_json(tmp_path / "deep.json", deep)
    shared = [1, 2]
    bench.write_json(tmp_path / "shared.json", {"x": shared, "y": shared})  # not a cycle


def test_csv_columns_that_collide_are_refused(tmp_path):
    with pytest.raises(ValueError, match="CSV header"):
        bench.save_rows([{1: "int"}, {"1": "str"}], {}, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_malformed_tables_and_panels_name_the_row_and_the_column(tmp_path):
    columns = [("n", "N", ""), ("ms", "time", ".2f")]
    assert_error_names(lambda: bench.format_table([{"n": 1, "ms": "fast"}], columns),
                       ["rows[0]['ms']", "'fast'", ".2f"])
    assert_error_names(lambda: bench.format_table([{"n": 1}], [("n", "N")]),
                       ["columns", "('n', 'N')"])
    assert_error_names(lambda: bench.format_table([1], columns), ["rows[0]", "dict"], TypeError)
    assert_error_names(lambda: bench.plot_panels([{"n": 1, "ms": 2.0}], tmp_path / "p.png", "ms",
                                                 "time", "n", lambda r: (), str),
                       ["rows[0]", "method"])
    assert_error_names(lambda: bench.write_json(tmp_path / "no" / "x.json", {"a": 1}),
                       ["path's folder", "does not exist"], FileNotFoundError)
    assert not (tmp_path / "no").exists()


def test_peak_bytes_count_an_out_tensor_that_the_operation_grows():
    a = torch.ones(100, 100)
    assert bench.peak_tensor_bytes(lambda: torch.matmul(a, a, out=torch.empty(0))) == 40_000


def test_a_folder_as_a_path_and_a_list_as_a_panel_are_named(tmp_path):
    assert_error_names(lambda: bench.write_json(tmp_path, {"a": 1}),
                       ["path must be a file", str(tmp_path)], IsADirectoryError)
    rows = [{"method": "a", "n": 1, "ms": 1.0, "d": 4}]
    assert_error_names(lambda: bench.plot_panels(rows, tmp_path / "p.png", "ms", "ms", "n",
                                                 lambda r: [r["d"]], str),
                       ["panel", "tuple", "[4]"], TypeError)


def test_peak_bytes_count_a_tensor_built_from_python_data():
    """torch.tensor(data) reaches the dispatcher as lift_fresh of a tensor made out of sight."""
    assert bench.peak_tensor_bytes(lambda: torch.tensor([1.0] * 1000)) == 4000


def test_a_row_without_an_x_value_is_named(tmp_path):
    rows = [{"ms": 1.0, "n": None, "method": "a"}, {"ms": 2.0, "n": 4, "method": "a"}]
    assert_error_names(lambda: bench.plot_panels(rows, tmp_path / "p.png", "ms", "ms", "n",
                                                 lambda r: (), str), ["rows[0]", "'n'"])


def test_a_row_that_a_log_axis_cannot_show_is_named(tmp_path):
    rows = [{"n": 0, "ms": 1.0, "method": "a"}, {"n": 4, "ms": 2.0, "method": "a"}]
    assert_error_names(lambda: bench.plot_panels(rows, tmp_path / "p.png", "ms", "ms", "n",
                                                 lambda r: (), str),
                       ["rows[0]", "positive 'n'", "log-log"])
    assert not (tmp_path / "p.png").exists()

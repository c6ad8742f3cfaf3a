"""Day 7's GPU run, prepared and tested on the CPU: the tile tuning (candidate filter, JSON
round trip, the launchers' choice), the one-command run (its dry run, its budget, its packing)
and the report that turns a returned archive into what the notebook shows."""

import json
import sys
import tarfile

import pytest
import torch

from day07_flash_attention import gpu_run, kernels, report, tuning
from day07_flash_attention.benchmark import main as benchmark_main

# On CPU tensors the kernels run only in Triton's interpreter: where CUDA compiles them, the
# CPU-sized runs below have no kernel to call, and the GPU run itself is the test.
INTERPRETER_ONLY = pytest.mark.skipif(not kernels.INTERPRETED,
                                      reason="runs the kernels on CPU tensors (interpreter)")


# ---------------------------------------------------------------- tuning
def test_candidates_cover_the_default_tiles_and_refuse_an_unknown_kernel():
    table = kernels.TILE_SIZES["tensor_cores_large_shared_memory"]
    for kernel in tuning.KERNELS:
        options = tuning.candidates(kernel)
        assert len(options) == len(set(options)) == 36
        assert table[kernel] in options and table[kernel + "_wide"] in options
    with pytest.raises(ValueError, match="kernel must be one of forward, dq, dkdv, got 'fwd'"):
        tuning.candidates("fwd")


def test_rejection_names_shared_memory_and_spills():
    assert tuning.rejection({"shared": 131072, "stack": 0}, 232448) is None
    assert "294912 B of shared memory, the device has 232448" in tuning.rejection(
        {"shared": 294912, "stack": 0}, 232448)
    assert "spill: 232 B" in tuning.rejection({"shared": 131072, "stack": 232}, 232448)


def test_the_filter_compiles_for_hopper_and_refuses_what_does_not_fit():
    """Compiled ahead of time for sm_90 in worker processes, no GPU needed: the forward kernel
    at d = 128 with 128 x 128 tiles and 4 stages needs 288 KiB of shared memory (Hopper has
    227 KiB a block); the default tiles fit, and 4 warps at d = 128 spill."""
    jobs = [{"kernel": "forward", "head_dim": 128, "causal": False, "tiles": tiles,
             "capability": 90, "shared_limit": tuning.HOPPER_SHARED_MEMORY, "batch": 1,
             "heads": 1} for tiles in ([128, 128, 8, 4], [128, 64, 8, 3], [128, 64, 4, 3])]
    too_big, default, spills = tuning.filter_candidates(jobs, workers=2)
    assert too_big["status"] == "rejected" and too_big["shared"] == 294912
    assert default["status"] == "ok" and default["shared"] <= 232448 and default["stack"] == 0
    assert spills["status"] == "rejected" and "spill" in spills["note"]


def test_best_tiles_are_the_fastest_correct_candidate_of_each_case():
    rows = [{"kernel": "dq", "head_dim": 128, "causal": True, "tiles": [128, 32, 8, 3],
             "status": "ok", "ms": 2.0},
            {"kernel": "dq", "head_dim": 128, "causal": True, "tiles": [64, 64, 8, 2],
             "status": "ok", "ms": 1.5},
            {"kernel": "dq", "head_dim": 128, "causal": True, "tiles": [64, 32, 4, 2],
             "status": "wrong", "ms": 0.1},
            {"kernel": "dq", "head_dim": 64, "causal": False, "tiles": [128, 64, 8, 3],
             "status": "ok", "ms": 1.0}]
    assert tuning.best_tiles(rows) == {"dq": {"128": {"causal": [64, 64, 8, 2]},
                                              "64": {"full": [128, 64, 8, 3]}}}


@INTERPRETER_ONLY
def test_tune_command_round_trips_and_the_launchers_choose_the_tuned_tiles(tmp_path, capsys):
    """--tune on the CPU (the interpreter times, a test of the plumbing): every candidate is
    recorded, and the best tiles read back are what the launchers use on that device."""
    assert benchmark_main(["--device", "cpu", "--tune", "--head-dims", "16",
                           "--max-candidates", "1", "--output", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("tiles-*.json")
    saved = json.loads(path.read_text())
    assert saved["complete"] and len(saved["candidates"]) == 3 * 2  # kernels x causal
    assert all(row["status"] == "ok" and row["ms"] > 0 for row in saved["candidates"])
    device_name = kernels.load_tuned_tiles(path)
    assert device_name == saved["device_name"]
    for kernel in tuning.KERNELS:
        for causal in (False, True):
            chosen = kernels.choose_tiles(kernel, 16, causal, torch.bfloat16, device_name,
                                          (9, 0), 232448)
            assert list(chosen) == saved["best"][kernel]["64"]["causal" if causal else "full"]


def test_launchers_fall_back_to_the_table_without_tuned_tiles(tmp_path, monkeypatch):
    monkeypatch.setattr(kernels, "TUNED_TILES_FOLDER", tmp_path)
    monkeypatch.setattr(kernels, "_TUNED", {})
    table = kernels.TILE_SIZES
    choose = kernels.choose_tiles
    assert choose("forward", 128, False, torch.bfloat16, "Some GPU", (9, 0), 232448) == \
        table["tensor_cores_large_shared_memory"]["forward_wide"]
    assert choose("dq", 64, True, torch.float16, "Some GPU", (8, 6), 101376) == \
        table["tensor_cores"]["dq"]
    assert choose("dkdv", 64, False, torch.float16, "T4", (7, 5), 65536) == \
        table["no_tensor_cores"]["dkdv"]
    # a tiles file for the device, but float32 and a case the file lacks use the table
    (tmp_path / "tiles-some-gpu.json").write_text(json.dumps({
        "device_name": "Some GPU", "best": {"forward": {"128": {"full": [64, 64, 4, 2]}}}}))
    monkeypatch.setattr(kernels, "_TUNED", {})  # the folder is read once per device name
    assert choose("forward", 128, False, torch.bfloat16, "Some GPU", (9, 0), 232448) == \
        (64, 64, 4, 2)
    assert choose("forward", 128, True, torch.bfloat16, "Some GPU", (9, 0), 232448) == \
        table["tensor_cores_large_shared_memory"]["forward_wide"]
    assert choose("forward", 128, False, torch.float32, "Some GPU", (9, 0), 232448) == \
        table["float32"]["forward_wide"]


# ---------------------------------------------------------------- the one-command run
@INTERPRETER_ONLY
def test_the_dry_run_runs_every_step_within_its_budget_into_two_files(tmp_path):
    record = gpu_run.run(tmp_path, dry_run=True)
    assert [entry["step"] for entry in record] == [s.name for s in gpu_run.plan(True)]
    assert all(entry["status"] == "ok" for entry in record), record
    assert sum(entry["seconds"] for entry in record) < gpu_run.BUDGET_S["dry-run"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([gpu_run.ARCHIVE, gpu_run.LOG])
    with tarfile.open(tmp_path / gpu_run.ARCHIVE) as archive:
        names = set(archive.getnames())
    for member in ("environment/environment.json", "check/check.json", "headline/results.json",
                   "headline-tuned/results.json", "models/models.json",
                   "sweep-rest/results.json", "steps.json", "gpu_run.log"):
        assert f"gpu_run/{member}" in names
    assert any(name.startswith("gpu_run/tune/tiles-") for name in names)
    summary = report.summary(_unpacked(tmp_path / gpu_run.ARCHIVE, tmp_path / "results"))
    assert "check: 16 of 16 passed" in summary and "tests ok" in summary


def _unpacked(archive, folder):
    report.unpack(archive, folder)
    return folder


def test_a_step_past_its_limit_is_stopped_and_the_budget_skips_the_rest(tmp_path):
    python = sys.executable
    steps = [gpu_run.Step("fails", 10, [], [python, "-c", "import sys; sys.exit(3)"]),
             gpu_run.Step("slow", 60, [], [python, "-c", "import time; time.sleep(60)"]),
             gpu_run.Step("late", 10, [], [python, "-c", "pass"])]
    record = gpu_run.run(tmp_path, budget_s=gpu_run.PACKING_RESERVE_S + 8, steps=steps)
    assert [entry["status"] for entry in record] == ["failed (exit 3)", "timeout", "skipped"]
    assert record[1]["seconds"] < 10
    with tarfile.open(tmp_path / gpu_run.ARCHIVE) as archive:
        steps_file = json.loads(archive.extractfile("gpu_run/steps.json").read())
    assert [entry["status"] for entry in steps_file["steps"]] == [e["status"] for e in record]


def test_gpu_run_refuses_a_bad_budget_and_a_missing_gpu(tmp_path, capsys):
    with pytest.raises(SystemExit):
        gpu_run.main([str(tmp_path), "--dry-run", "--budget", "-1"])
    assert "--budget must be a positive number of seconds, got -1" in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            gpu_run.main([str(tmp_path)])
        assert "use --dry-run" in capsys.readouterr().err


# ---------------------------------------------------------------- the report
FIXTURE = "FIXTURE written by a test, not a measurement"


def _fixture_archive(path, sweep=True):
    """A gpu_run archive with made-up numbers, named as such: not a result."""
    folder = path.parent / "fixture" / "gpu_run"
    (folder / "environment").mkdir(parents=True)
    (folder / "environment" / "environment.json").write_text(json.dumps(
        {"device": "cuda", "device_name": FIXTURE, "torch": "0", "triton": "0",
         "ceilings": {"matmul_bf16_8192_tflops": 800.0, "copy_gbps_read_plus_write": 4000.0}}))
    if sweep:
        def row(method, ms, tflops):
            return {"method": method, "mode": "forward", "causal": False, "dtype": "bfloat16",
                    "batch": 1, "heads": 1, "seq_len": 4096, "head_dim": 128, "status": "ok",
                    "ms": ms, "ms_min": ms, "ms_max": ms, "tflops": tflops, "peak_mib": 1.0,
                    "note": ""}
        (folder / "headline").mkdir()
        (folder / "headline" / "results.json").write_text(json.dumps(
            {"metadata": {"device": "cuda", "device_name": FIXTURE, "dtype": "bfloat16",
                          "batch": 1, "heads": 1},
             "rows": [row("triton", 1.0, 400.0), row("sdpa_flash", 1.25, 320.0),
                      row("sdpa_cudnn", 0.8, 500.0),
                      {**row("standard", None, None), "status": "OOM", "note": "simulated"}]}))
        (folder / "headline" / "time.png").write_bytes(b"a plot that is regenerated")
    (folder / "evil").mkdir()
    (folder / "evil" / "results.json.sh").write_text("not ours: skipped")
    with tarfile.open(path, "w:gz") as archive:
        archive.add(folder, arcname="gpu_run")
    return path


def test_a_returned_archive_renders_its_ratios_and_plots(tmp_path):
    written = report.unpack(_fixture_archive(tmp_path / "run.tar.gz"), tmp_path / "results")
    assert sorted(p.name for p in written) == ["environment.json", "headline.json",
                                               "memory.png", "time.png"]
    text = report.summary(tmp_path / "results")
    assert FIXTURE in text and "bf16 matrix product 800 TFLOP/s" in text
    (ratio,) = report.ratios(report.sweep_rows(report.load(tmp_path / "results")), 800.0)
    assert ratio["fastest"] == "sdpa_cudnn" and ratio["vs_fastest"] == pytest.approx(0.8)
    assert ratio["vs_flash"] == pytest.approx(1.25) and ratio["triton_share"] == 0.5
    assert "sdpa_cudnn" in text and "50%" in text and "62%" in text
    assert (tmp_path / "results" / "memory.png").is_file()


def test_a_partial_archive_and_an_empty_folder_say_what_they_lack(tmp_path):
    report.unpack(_fixture_archive(tmp_path / "run.tar.gz", sweep=False), tmp_path / "partial")
    text = report.summary(tmp_path / "partial")
    assert "no sweep measured yet" in text and "check" not in text
    assert report.summary(tmp_path / "none").startswith("No GPU results are committed yet")
    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz"):
        pass
    with pytest.raises(ValueError, match="holds no results of gpu_run"):
        report.unpack(empty, tmp_path / "unused")

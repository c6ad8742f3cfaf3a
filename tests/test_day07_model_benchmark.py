"""Day 7's model benchmark (`day07_flash_attention/model_benchmark.py`): one training step of
Day 3's Transformer and Day 6's ViT with standard and flash attention, run here at the tiny
size on the CPU, where the flash kernels run in Triton's interpreter (float32 only)."""

import pytest
import torch

from common.testing import assert_error_names
from day07_flash_attention import kernels, model_benchmark
from day07_flash_attention.model_benchmark import (
    MODEL_SIZES,
    add_ratios,
    format_model_table,
    run_model_benchmark,
    sequence_length,
)

FIGURES = ("ms", "ms_min", "ms_max", "peak_mib", "peak_tensor_mib", "loss")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_run(one_thread):
    """The whole tiny benchmark once (about 10 s, mostly the interpreter): the rows, and the
    number of rows each checkpoint call saw."""
    if not kernels.INTERPRETED:
        pytest.skip("flash attention runs on CPU tensors only in Triton's interpreter; where "
                    "CUDA compiles the kernels, the GPU run measures the models")
    seen = []
    rows = run_model_benchmark("cpu", "tiny", checkpoint=lambda rows: seen.append(len(rows)))
    return rows, seen


def test_tiny_run_measures_every_model_and_attention(tiny_run):
    rows, seen = tiny_run
    assert [(r["model"], r["attention"]) for r in rows] == [
        ("transformer", "standard"), ("transformer", "flash"), ("vit", "standard"),
        ("vit", "flash")]
    assert seen == [1, 2, 3, 4]
    for row in rows:
        assert row["status"] == "ok", row["note"]
        assert row["device"] == "cpu" and row["dtype"] == "float32" and row["size"] == "tiny"
        assert 0 < row["ms_min"] <= row["ms"] <= row["ms_max"]
        assert row["peak_mib"] is None  # the CPU allocator keeps no statistics
        assert row["peak_tensor_mib"] > 0 and row["parameters"] > 0


def test_standard_and_flash_compute_the_same_first_loss(tiny_run):
    rows, _ = tiny_run
    for model in ("transformer", "vit"):
        standard, flash = (r for r in rows if r["model"] == model)
        assert standard["parameters"] == flash["parameters"]
        assert flash["loss"] == pytest.approx(standard["loss"], abs=1e-5)


def test_ratios_compare_with_the_standard_row_of_the_same_model(tiny_run):
    rows, _ = tiny_run
    for row in rows:
        standard = next(r for r in rows if r["model"] == row["model"]
                        and r["attention"] == "standard")
        assert row["speedup"] == pytest.approx(standard["ms"] / row["ms"])
        assert row["memory_ratio"] == pytest.approx(standard["peak_tensor_mib"]
                                                    / row["peak_tensor_mib"])
    table = format_model_table(rows)
    assert "x faster" in table and "first loss" in table and len(table.splitlines()) == 6


@pytest.mark.parametrize("error, status", [
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 64.00 GiB"), "OOM"),
    (RuntimeError("something else went wrong"), "error")])
def test_a_failed_step_gives_a_row_without_figures(monkeypatch, error, status):
    def failing_loss(*args, **kwargs):
        raise error

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", failing_loss)
    rows = run_model_benchmark("cpu", "tiny", models=("vit",), attentions=("standard",))
    (row,) = rows
    assert row["status"] == status and row["note"] == str(error)
    assert all(row[key] is None for key in FIGURES)
    assert row["speedup"] is None and row["memory_ratio"] is None
    assert status in format_model_table(rows)


def test_ratios_are_none_without_a_standard_row():
    row = {"model": "vit", "attention": "flash", "status": "ok", "ms": 2.0, "peak_mib": 3.0}
    add_ratios([row])
    assert row["speedup"] is None and row["memory_ratio"] is None


@pytest.mark.parametrize("arguments, words", [
    (dict(device="tpu"), ["device", "'tpu'", "cuda", "cpu"]),
    (dict(size="huge"), ["size", "'huge'", "gpu", "tiny"]),
    (dict(models=("resnet",)), ["models", "resnet", "transformer", "vit"]),
    (dict(models="vit"), ["models", "'vit'", "list or tuple"]),
    (dict(models=()), ["models", "()", "non-empty"]),
    (dict(attentions=("sparse",)), ["attentions", "sparse", "standard", "flash"]),
])
def test_bad_arguments_name_the_argument(arguments, words):
    assert_error_names(lambda: run_model_benchmark(**{"device": "cpu", "size": "tiny",
                                                      **arguments}), words)


def test_gpu_sizes_are_the_ones_asked_for():
    transformer, vit = MODEL_SIZES["gpu"]["transformer"], MODEL_SIZES["gpu"]["vit"]
    assert sequence_length("transformer", transformer) == 4096  # source and target
    assert vit["model"]["image_size"] == 512 and vit["model"]["patch_size"] == 16
    assert sequence_length("vit", vit) == (512 // 16) ** 2 + 1 == 1025
    assert vit["model"]["d_model"] == 768 and vit["model"]["num_layers"] == 12  # B/16
    # standard attention's scores kept for the backward, ~6 bytes each under autocast
    transformer_scores = (3 * transformer["model"]["num_layers"] * transformer["batch"]
                          * transformer["model"]["num_heads"] * 4096 ** 2)
    vit_scores = (vit["model"]["num_layers"] * vit["batch"] * vit["model"]["num_heads"]
                  * 1025 ** 2)
    assert 6 * max(transformer_scores, vit_scores) < 40e9


def test_gpu_sizes_build():
    """On the meta device: the configurations are valid, and nothing is allocated."""
    for name, spec in MODEL_SIZES["gpu"].items():
        with torch.device("meta"):
            network = model_benchmark.build_model(name, spec, "flash")
        assert sum(p.numel() for p in network.parameters()) > 40e6

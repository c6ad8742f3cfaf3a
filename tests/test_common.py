import sys

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

from common import checks  # noqa: E402
from common.env import get_device, in_colab, seed_everything  # noqa: E402
from common.plotting import plot_attention, plot_attention_heads, plot_heatmap  # noqa: E402
from common.testing import assert_error_names, error_of  # noqa: E402


def test_seed_everything_makes_runs_repeat():
    seed_everything(3)
    first = torch.randn(4)
    seed_everything(3)
    assert torch.equal(first, torch.randn(4))
    with pytest.raises(ValueError, match="seed"):
        seed_everything(-1)


def test_get_device():
    assert get_device("cpu") == torch.device("cpu")
    assert get_device().type in {"cpu", "cuda", "mps"}
    with pytest.raises(ValueError, match="prefer"):
        get_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no cuda"):
            get_device("cuda")


def test_in_colab_follows_sys_modules(monkeypatch):
    assert not in_colab()
    monkeypatch.setitem(sys.modules, "google.colab", object())
    assert in_colab()


def test_plots_draw_and_reject_bad_shapes():
    ax = plot_heatmap(torch.rand(3, 4), title="t")
    assert ax.get_title() == "t"
    ax = plot_attention(torch.rand(2, 3), ["a", "b"], ["x", "y", "z"])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["x", "y", "z"]
    assert len(plot_attention_heads(torch.rand(3, 2, 2)).axes) == 4  # 3 heads and 1 colour bar
    with pytest.raises(ValueError, match="2-D"):
        plot_heatmap(torch.rand(2, 2, 2))
    with pytest.raises(ValueError, match="query_labels"):
        plot_attention(torch.rand(2, 3), ["a"], None)


def test_common_layers_collects_the_day_layers():
    import importlib

    import common.layers
    from common.notebooks import REPOSITORY_ROOT

    days = [importlib.import_module(p.name) for p in sorted(REPOSITORY_ROOT.glob("day*_*"))]
    for name in common.layers.__all__:
        owners = [day for day in days if getattr(day, name, None) is getattr(common.layers, name)]
        assert owners, f"common.layers.{name} is not a day's public name"
    assert {"MultiHeadAttention", "Transformer", "ViT", "flash_attention"} <= set(
        common.layers.__all__)


# ---------------------------------------------------------------- common.checks

@pytest.mark.parametrize("value, expected", [(3, 3), (np.int64(4), 4), (np.uint8(1), 1)])
def test_ints_and_numpy_integers_are_ints(value, expected):
    result = checks.positive_int(value, "size")
    assert result == expected and type(result) is int


@pytest.mark.parametrize("value", [True, 2.0, "2", None, np.float32(2.0), torch.tensor(2)])
def test_a_bool_a_float_or_a_tensor_is_not_an_int(value):
    assert_error_names(lambda: checks.positive_int(value, "size"), ["size", "int"], TypeError)


@pytest.mark.parametrize("check, value, words", [
    (checks.positive_int, 0, ["size", "positive int", "0"]),
    (checks.non_negative_int, -1, ["size", "non-negative int", "-1"]),
    (checks.positive_float, 0.0, ["size", "(0.0, inf)", "0.0"]),
    (checks.positive_float, float("nan"), ["size", "nan"]),
    (checks.positive_float, float("inf"), ["size", "inf"]),
])
def test_values_out_of_range_are_value_errors(check, value, words):
    assert_error_names(lambda: check(value, "size"), words)


def test_floats_take_numpy_numbers_and_ints_but_not_bools():
    assert checks.positive_float(np.float32(0.25), "scale") == 0.25
    assert type(checks.positive_float(np.float32(0.25), "scale")) is float
    assert checks.as_float(1, "rate") == 1.0
    assert_error_names(lambda: checks.as_float(True, "rate"), ["rate", "True"], TypeError)
    assert_error_names(lambda: checks.as_float(1.0, "p", 0.0, 1.0, exclusive_maximum=True),
                       ["p", "[0.0, 1.0)", "1.0"])


def test_bools_take_numpy_bools_but_not_truthy_values():
    assert checks.as_bool(np.True_, "causal") is True
    for value in (1, "yes", None, torch.tensor(True)):
        assert_error_names(lambda value=value: checks.as_bool(value, "causal"), ["causal"],
                           TypeError)


def test_tensor_checks_name_the_dimensions_and_dtypes():
    assert_error_names(lambda: checks.tensor(torch.zeros(3), "tokens", dims=2,
                                             shape="(batch, length)"),
                       ["tokens", "(batch, length)", "(3,)"])
    assert_error_names(lambda: checks.floating_tensor(torch.zeros(3, dtype=torch.long), "x"),
                       ["x", "torch.int64", "float32"], TypeError)
    assert_error_names(lambda: checks.tensor([1, 2], "x"), ["x", "torch.Tensor", "list"],
                       TypeError)
    assert_error_names(lambda: checks.same_dtype({"a": torch.zeros(1),
                                                  "b": torch.zeros(1).double()}),
                       ["a", "b", "torch.float64"], TypeError)


# ---------------------------------------------------------------- common.testing

def test_error_of_returns_the_message_and_fails_without_an_error():
    def refuse():
        raise ValueError("x must be positive, got -1")

    assert error_of(refuse) == "x must be positive, got -1"
    with pytest.raises(AssertionError, match="expected ValueError"):
        error_of(lambda: None)
    with pytest.raises(AssertionError, match=r"does not name \['y'\]"):
        assert_error_names(refuse, ["x", "y"])


def test_diagrams_draw_boxes_joined_by_arrows_and_reject_bad_sizes():
    import matplotlib.pyplot as plt

    from common.diagrams import arrow, box, canvas

    fig, ax = canvas(6, 3)
    first = box(ax, 1.5, 1.5, "Q", role="input")
    second = box(ax, 4.5, 1.5, "softmax", role="attention")
    arrow(ax, first.right, second.left, text="scores")
    assert first.right == (2.5, 1.5) and second.top == (4.5, 1.8)
    assert len(ax.patches) == 3 and [t.get_text() for t in ax.texts] == ["Q", "softmax", "scores"]
    assert_error_names(lambda: box(ax, 0, 0, "x", width=0), ["width", "0"])
    assert_error_names(lambda: box(ax, 0, 0, "x", role="blue"), ["role", "blue", "attention"])
    assert_error_names(lambda: canvas(1, -1), ["height", "-1"])
    plt.close(fig)


def test_compact_png_is_a_smaller_png_of_the_same_size():
    import io

    import matplotlib.pyplot as plt
    from PIL import Image

    from common.plotting import compact_png, show_figures_as_compact_pngs

    figure = plot_heatmap(torch.rand(8, 8)).figure
    full = io.BytesIO()
    figure.savefig(full, format="png", bbox_inches="tight")
    compact = compact_png(figure)
    assert compact.startswith(b"\x89PNG") and len(compact) < len(full.getvalue())
    assert Image.open(io.BytesIO(compact)).size == Image.open(full).size
    assert_error_names(lambda: compact_png(figure, 1), ["colors", "256", "1"])
    assert_error_names(lambda: compact_png(figure.axes[0]), ["figure", "Axes"], TypeError)
    assert show_figures_as_compact_pngs() is False  # not in IPython: nothing to do
    plt.close("all")


def test_like_weights_and_model_builder_name_what_they_expected():
    weight = torch.zeros(2, 2)
    checks.like_weights(torch.zeros(3, 2), weight, "router")
    assert_error_names(lambda: checks.like_weights(torch.zeros(3, 2, dtype=torch.float64), weight,
                                                   "router"),
                       ["x", "torch.float32", "router", "torch.float64"], TypeError)
    assert checks.model_builder(torch.nn.Linear) is torch.nn.Linear
    assert_error_names(lambda: checks.model_builder(torch.nn.Linear(2, 2)),
                       ["build", "function", "Linear"], TypeError)


def test_as_callable_names_what_it_got():
    assert checks.as_callable(len, "run") is len
    assert_error_names(lambda: checks.as_callable(None, "run"),
                       ["run", "callable", "None (NoneType)"], TypeError)


@pytest.fixture
def one_gib_machine(monkeypatch):
    monkeypatch.setattr(checks, "memory_limit_bytes", lambda: 2 ** 30)


def test_affordable_refuses_more_than_the_memory_limit(one_gib_machine):
    checks.affordable(2 ** 28, "d", 2 ** 28)  # 1 GiB of float32: exactly the limit
    checks.affordable(2 ** 27, "d", 2 ** 27, bytes_per_element=8)
    assert_error_names(lambda: checks.affordable(4 * 10 ** 9, "num_experts", 10 ** 9),
                       ["num_experts=1000000000", "about 14.9 GiB", "1.0 GiB of memory"])
    assert_error_names(lambda: checks.affordable(2 ** 28, "d", 2 ** 28, bytes_per_element=8),
                       ["d=268435456", "2.0 GiB"])


@pytest.mark.parametrize("elements, words", [
    (10 ** 30, ["d_state=10000000", "3.73e+21 GiB"]),  # beyond int64
    (10 ** 400, ["3.73e+391 GiB"])])  # beyond a float
def test_affordable_takes_ints_of_any_size(one_gib_machine, elements, words):
    assert_error_names(lambda: checks.affordable(elements, "d_state", 10 ** 7), words)


def test_affordable_refuses_an_estimate_that_is_not_an_int(one_gib_machine):
    for elements in (True, 1.5, -1):
        with pytest.raises((TypeError, ValueError), match="elements"):
            checks.affordable(elements, "d", 1)


def test_the_memory_limit_is_the_physical_memory_or_64_gib(monkeypatch):
    import os

    pages = os.sysconf("SC_PHYS_PAGES")
    assert checks.memory_limit_bytes() >= pages * os.sysconf("SC_PAGE_SIZE") > 0

    def no_sysconf(name):
        raise ValueError(f"unrecognized configuration name {name}")

    monkeypatch.setattr(checks.os, "sysconf", no_sysconf)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    assert checks.memory_limit_bytes() == 64 * 2 ** 30
    # CUDA in use: a device larger than the host's memory raises the limit.
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda i: type("Properties", (), {"total_memory": (i + 1) * 2 ** 40}))
    assert checks.memory_limit_bytes() == 2 * 2 ** 40


def test_module_names_every_kind_of_a_tuple():
    assert_error_names(lambda: checks.module(torch.zeros(1), "layer",
                                             (torch.nn.Linear, torch.nn.Conv1d)),
                       ["layer", "Linear or Conv1d", "Tensor"], TypeError)

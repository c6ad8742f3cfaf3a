import sys

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from common.env import get_device, in_colab, seed_everything  # noqa: E402
from common.plotting import plot_attention, plot_attention_heads, plot_heatmap  # noqa: E402


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

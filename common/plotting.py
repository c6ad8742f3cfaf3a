"""Plotting helpers the notebooks share: heatmaps of matrices and of attention weights, and
figures saved as small PNGs."""

import io
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure


def _as_matrix(matrix, name: str) -> np.ndarray:
    if isinstance(matrix, torch.Tensor):
        matrix = matrix.detach().float().cpu().numpy()
    matrix = np.asarray(matrix, dtype=float)
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix, got shape {matrix.shape}")
    return matrix


def plot_heatmap(
    matrix,
    ax: Axes | None = None,
    title: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    cmap: str = "viridis",
    colorbar: bool = True,
    **imshow_kwargs,
) -> Axes:
    """Draw a 2-D tensor or array as an image with a colour bar; returns the axes."""
    matrix = _as_matrix(matrix, "matrix")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    image = ax.imshow(matrix, cmap=cmap, aspect="auto", interpolation="nearest", **imshow_kwargs)
    if colorbar:
        ax.figure.colorbar(image, ax=ax)
    if title:
        ax.set_title(title)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    return ax


def plot_attention(
    weights,
    query_labels: Sequence[str] | None = None,
    key_labels: Sequence[str] | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    annotate: bool = False,
    colorbar: bool = True,
) -> Axes:
    """Draw one attention matrix (queries as rows, keys as columns), weights from 0 to 1."""
    weights = _as_matrix(weights, "weights")
    for labels, size, name in ((query_labels, weights.shape[0], "query_labels"),
                               (key_labels, weights.shape[1], "key_labels")):
        if labels is not None and len(labels) != size:
            raise ValueError(f"{name} has {len(labels)} labels, expected {size} for weights "
                             f"of shape {weights.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(1 + 0.45 * weights.shape[1], 0.8 + 0.45 * weights.shape[0]))
    plot_heatmap(weights, ax=ax, title=title, xlabel="key", ylabel="query", cmap="Blues",
                 colorbar=colorbar, vmin=0.0, vmax=1.0)
    ax.set_aspect("equal")
    if key_labels is not None:
        ax.set_xticks(range(len(key_labels)), key_labels, rotation=90)
    if query_labels is not None:
        ax.set_yticks(range(len(query_labels)), query_labels)
    if annotate:
        for (row, col), value in np.ndenumerate(weights):
            ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if value > 0.5 else "black")
    return ax


def plot_attention_heads(weights, query_labels=None, key_labels=None, title: str | None = None):
    """Draw the attention of every head side by side; `weights` is (heads, queries, keys)."""
    if isinstance(weights, torch.Tensor):
        weights = weights.detach().float().cpu().numpy()
    weights = np.asarray(weights, dtype=float)
    if weights.ndim != 3:
        raise ValueError(f"weights must be (heads, queries, keys), got shape {weights.shape}")
    heads = weights.shape[0]
    fig, axes = plt.subplots(1, heads, figsize=(2.6 * heads, 2.8), squeeze=False)
    for head, ax in enumerate(axes[0]):
        plot_attention(weights[head], query_labels, key_labels, ax=ax, title=f"head {head}",
                       colorbar=head == heads - 1)
        if head:
            ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def compact_png(figure: Figure, colors: int = 256) -> bytes:
    """`figure` as a PNG with a palette of at most `colors` colours: a few times smaller than
    matplotlib's true-colour PNG for diagrams and plots, which use few colours."""
    from PIL import Image

    if not isinstance(figure, Figure):
        raise TypeError(f"figure must be a matplotlib Figure, got {type(figure).__name__}")
    if isinstance(colors, bool) or not isinstance(colors, int) or not 2 <= colors <= 256:
        raise ValueError(f"colors must be an int from 2 to 256 (a PNG palette), got {colors!r}")
    rendered = io.BytesIO()
    figure.savefig(rendered, format="png", dpi=figure.dpi, bbox_inches="tight")
    image = Image.open(rendered).convert("RGB").quantize(colors)
    compact = io.BytesIO()
    image.save(compact, format="png", optimize=True)
    return compact.getvalue()


def show_figures_as_compact_pngs(colors: int = 256) -> bool:
    """In a notebook, display every matplotlib figure with `compact_png`, so that the saved
    notebook stays light. Returns False (and does nothing) outside IPython."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        return False
    compact_png(plt.figure(figsize=(0.1, 0.1)), colors)  # checks `colors` now, not per figure
    plt.close()
    shell.display_formatter.formatters["image/png"].for_type(
        Figure, lambda figure: compact_png(figure, colors))
    return True

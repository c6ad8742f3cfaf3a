"""Block diagrams drawn with matplotlib: boxes with labels joined by arrows.

The notebooks draw their architecture figures with these three functions, so that every
diagram is code (nothing downloaded) and every day's figures look alike.
"""

from dataclasses import dataclass

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from common import checks

# One palette for every day: the role of a box, not its day, picks its colour.
COLORS = {
    "input": "#e8e8e8",      # tokens, images, tensors coming in
    "attention": "#f9d9b3",  # anything that mixes positions
    "linear": "#cfe2f3",     # learned projections and feed-forward layers
    "norm": "#d9ead3",       # normalisation, residual additions
    "output": "#ead1dc",     # what comes out: logits, probabilities
    "memory": "#fff2cc",     # storage, for the memory-hierarchy figure
}


@dataclass(frozen=True)
class Box:
    """Where a drawn box sits, so that arrows can join its sides."""

    x: float  # centre
    y: float
    width: float
    height: float

    @property
    def top(self) -> tuple[float, float]:
        return self.x, self.y + self.height / 2

    @property
    def bottom(self) -> tuple[float, float]:
        return self.x, self.y - self.height / 2

    @property
    def left(self) -> tuple[float, float]:
        return self.x - self.width / 2, self.y

    @property
    def right(self) -> tuple[float, float]:
        return self.x + self.width / 2, self.y


def canvas(width: float, height: float, scale: float = 0.9) -> tuple[plt.Figure, Axes]:
    """A blank figure whose data coordinates run from (0, 0) to (width, height)."""
    width = checks.positive_float(width, "width")
    height = checks.positive_float(height, "height")
    scale = checks.positive_float(scale, "scale")
    fig, ax = plt.subplots(figsize=(width * scale, height * scale))
    ax.set(xlim=(0, width), ylim=(0, height), aspect="equal")
    ax.axis("off")
    return fig, ax


def box(ax: Axes, x: float, y: float, text: str, width: float = 2.0, height: float = 0.6,
        role: str = "linear", fontsize: float = 9) -> Box:
    """Draw a rounded box centred at (x, y) with `text` inside, coloured by its `role`."""
    width = checks.positive_float(width, "width")
    height = checks.positive_float(height, "height")
    if role not in COLORS:
        raise ValueError(f"role must be one of {sorted(COLORS)}, got {role!r}")
    ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height,
                                boxstyle="round,pad=0.02,rounding_size=0.08",
                                facecolor=COLORS[role], edgecolor="#444444", linewidth=0.8))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize)
    return Box(x, y, width, height)


def arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float], text: str | None = None,
          bend: float = 0.0, fontsize: float = 8) -> None:
    """Draw an arrow from `start` to `end`, optionally bent (`bend` is the arc's curvature)
    and labelled beside its middle."""
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=10,
                                 connectionstyle=f"arc3,rad={bend}", color="#444444",
                                 linewidth=0.9, shrinkA=0, shrinkB=0))
    if text:  # above a mostly horizontal arrow, beside a mostly vertical one
        x, y = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
        if abs(end[0] - start[0]) >= abs(end[1] - start[1]):
            ax.text(x, y + 0.06, text, ha="center", va="bottom", fontsize=fontsize,
                    color="#444444")
        else:
            ax.text(x + 0.08, y, text, ha="left", va="center", fontsize=fontsize,
                    color="#444444")

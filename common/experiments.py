"""Statistics for experiments run on several seeds (CONTRIBUTING.md, "Experiments").

A notebook compares two methods by their paired differences: both trained on the same seeds,
the difference taken seed by seed, so that what a seed does to both cancels. The mean of the
differences is stated with their standard deviation. A difference counts as detectable when
the mean lies more than two standard errors from zero. At 5 seeds Student's t would ask for
2.78: two is the stricter bar for a notebook that says "no detectable difference", and the
looser one for a claimed difference, which the notebooks therefore also check seed by seed.
"""

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from common import checks


@dataclass(frozen=True)
class PairedDifference:
    """The seed-by-seed differences first - second, summarised."""

    mean: float
    std: float    # sample standard deviation of the differences
    count: int    # the number of seeds

    @property
    def standard_error(self) -> float:
        return self.std / math.sqrt(self.count)

    @property
    def detectable(self) -> bool:
        """Whether the mean lies more than two standard errors from zero."""
        return abs(self.mean) > 2 * self.standard_error

    def describe(self, scale: float = 1.0, unit: str = "") -> str:
        """'mean ± std unit', each multiplied by `scale` (100 for accuracies in points)."""
        scale = checks.as_float(scale, "scale")
        if not isinstance(unit, str):
            raise TypeError(f"unit must be a str, got {type(unit).__name__}")
        if not (math.isfinite(self.mean * scale) and math.isfinite(self.std * scale)):
            raise ValueError(f"scale={scale!r} makes the mean or the std overflow")
        mean = round(self.mean * scale, 1) + 0.0  # + 0.0: no "-0.0"
        return f"{mean:+.1f} ± {self.std * scale:.1f}{unit}"


def _numbers(values: Sequence[float], name: str) -> list[float]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a sequence of numbers (one per seed), got "
                        f"{type(values).__name__}")
    return [checks.as_float(value, f"{name}[{index}]") for index, value in enumerate(values)]


def paired_difference(first: Sequence[float], second: Sequence[float]) -> PairedDifference:
    """Summarise first[i] - second[i] over seeds i: at least two seeds, the same number on
    both sides, every value a finite number."""
    first, second = _numbers(first, "first"), _numbers(second, "second")
    if len(first) != len(second):
        raise ValueError(f"first and second must hold one value per seed each, got "
                         f"{len(first)} and {len(second)} values")
    if len(first) < 2:
        raise ValueError(f"a paired difference needs at least 2 seeds, got {len(first)}")
    differences = [a - b for a, b in zip(first, second, strict=True)]
    if not all(map(math.isfinite, differences)):
        raise ValueError("first - second overflows a float: the values are too large to "
                         "compare by their differences")
    try:
        return PairedDifference(statistics.fmean(differences), statistics.stdev(differences),
                                len(differences))
    except OverflowError:
        raise ValueError("the differences' mean or spread overflows a float: the values are "
                         "too large to compare by their differences") from None

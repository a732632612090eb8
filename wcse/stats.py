"""Intervals and estimators, one module for the data metrics, the evaluation and the report.

- A proportion measured once (pass@1 over test problems, an FPR) carries a Wilson interval:
  unlike p +- z*se it stays inside [0, 1] and is not empty at 0/n or n/n.
- A figure repeated over seeds is reported as the mean with an interval over the repeats
  (:func:`estimate`): one run keeps its Wilson interval, two runs their range (a t-interval on
  one degree of freedom says nothing), three or more the 95% t-interval of the mean.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from scipy.stats import t as student_t

Z95 = 1.96  # the normal quantile of a two-sided 95% interval, to the usual two decimals


def wilson_interval(successes: int, total: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval of ``successes / total``; (0, 1) when nothing was measured."""
    if not 0 <= successes <= total:
        raise ValueError(f"need 0 <= successes <= total, got {successes}/{total}")
    if total == 0:
        return (0.0, 1.0)
    p = successes / total
    denom = 1.0 + z * z / total
    center = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    # at 0/n and n/n rounding can put a bound a hair past p; the interval must hold its estimate
    return (min(p, max(0.0, center - half)), max(p, min(1.0, center + half)))


def t95(df: int) -> float:
    """The two-sided 95% quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError(f"need df >= 1, got {df}")
    return float(student_t.ppf(0.975, df))


@dataclass(frozen=True)
class Estimate:
    """A mean over runs with its interval, and how the interval was made (tables print it)."""

    mean: float
    low: float | None
    high: float | None
    n: int
    method: str


def estimate(
    values: Sequence[float | None], interval: Sequence[float] | None = None, *, proportion: bool = True
) -> Estimate | None:
    """Mean over repeats with an interval. A single run keeps the interval it came with
    (``interval``: Wilson's over test problems, for pass@1 and FPR). Two runs give their range.
    Three or more give the 95% t-interval of the mean over runs, cut to [0, 1] for a
    ``proportion`` (no rate is below 0). None values (nothing measured) are left out."""
    xs = [x for x in values if x is not None]
    if not xs:
        return None
    mean = statistics.fmean(xs)
    if len(xs) == 1:
        if len(values) == 1 and interval is not None:
            return Estimate(mean, interval[0], interval[1], 1, "95% Wilson (1 run)")
        return Estimate(mean, None, None, 1, "1 run, no interval")
    if len(xs) == 2:
        return Estimate(mean, min(xs), max(xs), 2, "min-max of 2 runs")
    half = t95(len(xs) - 1) * statistics.stdev(xs) / math.sqrt(len(xs))
    low, high = (max(0.0, mean - half), min(1.0, mean + half)) if proportion else (mean - half, mean + half)
    return Estimate(mean, low, high, len(xs), f"95% t over {len(xs)} runs")

"""Verdicts from a handful of seeds: paired differences with a 95% t-interval, decided three ways.

Every comparison pairs runs by seed (same initial weights, same batches). A criterion *holds* when the whole
95% confidence interval of the paired difference lies on the claimed side, *does not hold* when it lies wholly
on the other side, and is *inconclusive* when the interval straddles the line — with few seeds that is common,
and the report says so rather than guess.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"


def t_critical(df: int) -> float:
    """The two-sided 95% quantile of Student's t with ``df`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.975, df))


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


@dataclass(frozen=True)
class Difference:
    """Mean of ``a − b`` over paired seeds, with its 95% confidence interval [low, high]."""

    mean: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        if self.n < 2:
            return f"{self.mean:+.4g} (one seed: no interval)"
        return f"{self.mean:+.4g} (95% CI {self.low:+.4g} … {self.high:+.4g}, {self.n} seeds)"


def paired_difference(a: Sequence[float], b: Sequence[float]) -> Difference:
    if len(a) != len(b) or not a:
        raise ValueError(f"Invalid pairs: {len(a)} and {len(b)} values (need the same number, at least one)")
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    mean, std = mean_std(diffs)
    if len(diffs) < 2:
        return Difference(mean, -math.inf, math.inf, 1)
    half = t_critical(len(diffs) - 1) * std / math.sqrt(len(diffs))
    return Difference(mean, mean - half, mean + half, len(diffs))


def decide_below(diff: Difference, bound: float = 0.0) -> str:
    """Holds if the whole interval is below ``bound``, fails if wholly at or above it."""
    return HOLDS if diff.high < bound else FAILS if diff.low >= bound else INCONCLUSIVE


def decide_above(diff: Difference, bound: float = 0.0) -> str:
    return HOLDS if diff.low > bound else FAILS if diff.high <= bound else INCONCLUSIVE


def decide_within(diff: Difference, margin: float) -> str:
    """Equivalence: holds if the interval lies inside (−margin, margin), fails if wholly outside it."""
    if -margin < diff.low and diff.high < margin:
        return HOLDS
    return FAILS if diff.low >= margin or diff.high <= -margin else INCONCLUSIVE


def combine(verdicts: Sequence[str]) -> str:
    """A claim with several parts holds if every part holds, fails if any part fails, else is inconclusive."""
    if any(v == FAILS for v in verdicts):
        return FAILS
    return HOLDS if verdicts and all(v == HOLDS for v in verdicts) else INCONCLUSIVE

"""Means with 95% confidence intervals, and paired differences over shared seeds."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scipy import stats


@dataclass(frozen=True)
class Estimate:
    """Mean of n values and the half-width of its confidence interval (Student t, n - 1
    degrees of freedom): mean ± half_width. half_width is NaN for n < 2."""

    mean: float
    half_width: float
    n: int

    @property
    def excludes_zero(self) -> bool:
        return not math.isnan(self.half_width) and abs(self.mean) > self.half_width


def mean_ci(values: Sequence[float], level: float = 0.95) -> Estimate:
    """mean ± t_{(1+level)/2, n-1} s / sqrt(n), s the sample std (ddof 1)."""
    n = len(values)
    if n == 0:
        return Estimate(math.nan, math.nan, 0)
    mean = math.fsum(values) / n
    if n < 2:
        return Estimate(mean, math.nan, n)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    return Estimate(mean, float(stats.t.ppf((1 + level) / 2, n - 1)) * sd / math.sqrt(n), n)


def paired_difference(
    method: Mapping[int, float], baseline: Mapping[int, float], level: float = 0.95
) -> Estimate:
    """Mean of method - baseline over the seeds both have, with its interval (a paired t
    interval: the seed's shared data draw and initialisation cancel)."""
    seeds = sorted(set(method) & set(baseline))
    return mean_ci([method[s] - baseline[s] for s in seeds], level)

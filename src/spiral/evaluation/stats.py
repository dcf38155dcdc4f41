"""Small statistics helpers: Wilson intervals for rates, normal and bootstrap intervals for means."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence


def wilson_interval(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion; (0, 1) when n == 0."""
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, n], got {successes} of {n}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_interval(values: Sequence[float], z: float = 1.96) -> tuple[float, float, float]:
    """(mean, low, high): normal-approximation interval of a mean (sample standard deviation)."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = sum(values) / n
    if n == 1:
        return mean, mean, mean
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    half = z * math.sqrt(var / n)
    return mean, mean - half, mean + half


def bootstrap_interval(
    statistic: Callable[[random.Random], float], n_boot: int = 200, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval of `statistic(rng)`, a function that draws one bootstrap resample and scores it."""
    rng = random.Random(seed)
    draws = sorted(statistic(rng) for _ in range(n_boot))
    lo = draws[int(math.floor((1 - level) / 2 * (n_boot - 1)))]
    hi = draws[int(math.ceil((1 + level) / 2 * (n_boot - 1)))]
    return lo, hi

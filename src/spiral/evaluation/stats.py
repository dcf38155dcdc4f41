"""Small statistics helpers: Wilson intervals for rates, normal and bootstrap intervals for means, paired
differences of per-item scores."""

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
    return _percentiles([statistic(rng) for _ in range(n_boot)], level)


N_BOOT = 2000


def _percentiles(draws: list[float], level: float) -> tuple[float, float]:
    draws = sorted(draws)
    k = len(draws) - 1
    return draws[int(math.floor((1 - level) / 2 * k))], draws[int(math.ceil((1 + level) / 2 * k))]


def bootstrap_mean(
    values: Sequence[float], n_boot: int = N_BOOT, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, low, high): percentile bootstrap interval of the mean of `values` (NaNs when empty)."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = sum(values) / n
    if n == 1 or min(values) == max(values):
        return mean, mean, mean
    rng = random.Random(seed)
    vals = list(values)
    draws = [sum(vals[rng.randrange(n)] for _ in range(n)) / n for _ in range(n_boot)]
    return (mean, *_percentiles(draws, level))


def paired_difference(
    a: Sequence[float], b: Sequence[float], n_boot: int = N_BOOT, level: float = 0.95, seed: int = 0
) -> dict[str, float]:
    """Mean of b - a over paired items with a bootstrap interval, and the share of resamples where b > a."""
    if len(a) != len(b):
        raise ValueError(f"paired samples need equal lengths, got {len(a)} and {len(b)}")
    diffs = [y - x for x, y in zip(a, b, strict=True)]
    mean, lo, hi = bootstrap_mean(diffs, n_boot, level, seed)
    return {
        "items": len(diffs),
        "a": sum(a) / len(a) if a else math.nan,
        "b": sum(b) / len(b) if b else math.nan,
        "diff": mean,
        "ci": [lo, hi],
        "b_better": sum(d > 0 for d in diffs),
        "a_better": sum(d < 0 for d in diffs),
    }

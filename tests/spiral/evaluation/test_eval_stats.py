"""Statistics helpers against hand-computed values."""

from __future__ import annotations

import math
import random

import pytest

from spiral.evaluation.stats import bootstrap_interval, mean_interval, wilson_interval


def test_wilson_interval_known_values() -> None:
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    lo, hi = wilson_interval(0, 20)
    assert lo == 0.0 and hi == pytest.approx(0.1611, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_wilson_interval_contains_the_rate_and_narrows() -> None:
    for k, n in [(1, 3), (37, 100), (999, 1000)]:
        lo, hi = wilson_interval(k, n)
        assert lo <= k / n <= hi
    assert (
        wilson_interval(50, 100)[1] - wilson_interval(50, 100)[0]
        > wilson_interval(500, 1000)[1] - wilson_interval(500, 1000)[0]
    )
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_mean_interval() -> None:
    mean, lo, hi = mean_interval([1.0, -1.0, 1.0, -1.0])
    assert mean == 0.0 and hi == pytest.approx(1.96 * math.sqrt(4 / 3 / 4))
    assert mean_interval([2.0]) == (2.0, 2.0, 2.0)
    assert all(math.isnan(x) for x in mean_interval([]))


def test_bootstrap_interval_of_a_mean() -> None:
    gen = random.Random(0)
    data = [gen.gauss(0, 1) for _ in range(400)]
    lo, hi = bootstrap_interval(lambda rng: sum(rng.choices(data, k=len(data))) / len(data), n_boot=300)
    mean = sum(data) / len(data)
    assert lo < mean < hi and 0.1 < hi - lo < 0.3  # about 2 * 1.96 / sqrt(400) = 0.196

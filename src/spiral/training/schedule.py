"""Step schedules of the learner's coefficients (shared by the language-model learner and the tabular twins)."""

from __future__ import annotations


def linear_decay(step: int, start: float, final: float, steps: int) -> float:
    """`start` at step 0, moving linearly to `final` at step `steps` and staying there; `start` throughout when
    `steps` <= 0 (no schedule)."""
    if steps <= 0:
        return start
    frac = min(max(step, 0), steps) / steps
    return start + (final - start) * frac

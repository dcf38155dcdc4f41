"""Supervising processes: the linear process (one X_0 per path) and the independent linear process.

Time runs from t = 0 (noise) to t = T (data); `schedule` holds the fractions t_k in [0, 1], k = 0..T.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from runkit.errors import UserError


def uniform_schedule(T: int) -> list[float]:
    """The fractions k / T for k = 0..T."""
    if T < 1:
        raise UserError(f"the number of TM steps must be >= 1, got {T}")
    return [k / T for k in range(T + 1)]


def check_schedule(schedule: list[float]) -> list[float]:
    """Validate a custom schedule: strictly increasing from 0 to 1 with at least two entries."""
    s = [float(v) for v in schedule]
    if len(s) < 2 or s[0] != 0.0 or s[-1] != 1.0 or any(b <= a for a, b in zip(s, s[1:], strict=False)):
        raise UserError(f"a t schedule must increase strictly from 0 to 1, e.g. 0,0.5,0.75,1; got {schedule}")
    return s


def parse_schedule(text: str | list[float] | None, T: int) -> list[float]:
    """A schedule from 'uniform' / None (k/T) or a comma list such as '0,0.5,0.75,1' (which sets T)."""
    if text is None or text == "uniform":
        return uniform_schedule(T)
    if isinstance(text, str):
        try:
            text = [float(v) for v in text.split(",")]
        except ValueError:
            raise UserError(f"cannot read the t schedule {text!r}; write it as 0,0.5,0.75,1") from None
    return check_schedule(list(text))


def _bcast(tau: Tensor, like: Tensor) -> Tensor:
    return tau.reshape(-1, *([1] * (like.dim() - 1)))


def interpolate(X_0: Tensor, X_T: Tensor, tau: Tensor) -> Tensor:
    """X_t = (1 - tau) X_0 + tau X_T with one tau per sample (B,)."""
    tau = _bcast(tau, X_0)
    return (1 - tau) * X_0 + tau * X_T


@dataclass
class LinearPath:
    """A whole linear process with shared noise: X[k] is X_{t_k}, Y = X_T - X_0 is the DTM latent."""

    X: Tensor  # (T+1, B, n, d)
    Y: Tensor  # (B, n, d)
    schedule: list[float]


def linear_process(X_T: Tensor, X_0: Tensor, T: int) -> LinearPath:
    """All states of the linear process X_t = (1 - t/T) X_0 + (t/T) X_T with ONE X_0 per path."""
    schedule = uniform_schedule(T)
    X = torch.stack([(1 - f) * X_0 + f * X_T for f in schedule])
    return LinearPath(X=X, Y=X_T - X_0, schedule=schedule)


def independent_process(
    X_T: Tensor, schedule: list[float], generator: torch.Generator | None = None
) -> Tensor:
    """States X_{t_k} = (1 - t_k) X_{0,k} + t_k X_T with FRESH noise X_{0,k} for every k: (T+1, B, n, d)."""
    noise = torch.randn((len(schedule), *X_T.shape), generator=generator, dtype=X_T.dtype)
    return torch.stack([(1 - f) * noise[k] + f * X_T for k, f in enumerate(schedule)])


@dataclass
class HeadPathSample:
    """One draw of the head's flow-matching path: Y_s = (1 - s) Y_0 + s Y, regression target Y - Y_0."""

    s: Tensor  # (N,)
    Y_0: Tensor  # (N, d)
    Y_s: Tensor  # (N, d)
    target: Tensor  # (N, d)


def parse_time_dist(text: str) -> tuple[str, float, float]:
    """A time distribution setting: `uniform`, or `logit_normal[:M,S]` (sigmoid of N(M, S^2); default 0, 1)."""
    from runkit.errors import UserError

    name, _, params = text.strip().partition(":")
    if name == "uniform" and not params:
        return "uniform", 0.0, 1.0
    if name == "logit_normal":
        try:
            m, sd = (float(x) for x in params.split(",")) if params else (0.0, 1.0)
        except ValueError:
            m = sd = float("nan")
        if math.isfinite(m) and math.isfinite(sd) and 0 < sd <= 10 and abs(m) <= 10:
            return "logit_normal", m, sd
    raise UserError(
        f"time distribution must be uniform or logit_normal[:M,S] (0 < S <= 10, |M| <= 10), got {text!r}"
    )


def draw_unit_time(
    n: int, dist: str = "uniform", generator: torch.Generator | None = None, dtype=None
) -> Tensor:
    """n times in (0, 1): U[0, 1) (the draws of torch.rand, as before this setting existed), or logit-normal
    (more weight in the middle of the path, as SD3 and DTM++ sample t and s)."""
    name, m, sd = parse_time_dist(dist)
    if name == "uniform":
        return torch.rand(n, generator=generator, dtype=dtype)
    return torch.sigmoid(m + sd * torch.randn(n, generator=generator, dtype=dtype))


def head_path(Y: Tensor, generator: torch.Generator | None = None, dist: str = "uniform") -> HeadPathSample:
    """Draw s (U[0, 1], or `dist`) and Y_0 ~ N(0, I) per row of Y (N, d) and build Y_s and the target."""
    s = draw_unit_time(Y.shape[0], dist, generator, Y.dtype)
    Y_0 = torch.randn(Y.shape, generator=generator, dtype=Y.dtype)
    Y_s = interpolate(Y_0, Y, s)
    return HeadPathSample(s=s, Y_0=Y_0, Y_s=Y_s, target=Y - Y_0)

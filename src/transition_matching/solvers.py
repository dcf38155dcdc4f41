"""Fixed-step solvers over a time interval, counting velocity evaluations: the ODE solvers Euler and midpoint,
and `sde[:ETA]`, an Euler-Maruyama sampler with the same marginals as the flow (no extra evaluation).

The flows here follow the linear path x_s = (1 - s) x_0 + s x_1 with x_0 ~ N(0, I), so the score of p_s follows
from the velocity v: E[x_0 | x_s = x] = x - s v, and grad log p_s(x) = -(x - s v) / (1 - s). With the noise
sigma(s)^2 = 2 ETA (1 - s) (vanishing at the data end), the SDE
    dx = [v - ETA (x - s v)] ds + sqrt(2 ETA (1 - s)) dW
has the marginals of the ODE dx = v ds; ETA = 0 is Euler. ETA defaults to 1."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from runkit.errors import UserError

SOLVERS = ("euler", "midpoint", "sde")
Velocity = Callable[[Tensor, float], Tensor]


@dataclass
class Solution:
    """The state at the end of the interval and how many times the velocity was evaluated."""

    x: Tensor
    evals: int


def evals_per_step(solver: str) -> int:
    """Velocity evaluations that one step of `solver` costs."""
    check_solver(solver)
    return 2 if solver == "midpoint" else 1


def check_solver(solver: str) -> None:
    """Raise a UserError for an unknown solver name."""
    sde_eta(solver) if solver.startswith("sde") else None
    if solver.partition(":")[0] not in SOLVERS:
        raise UserError(f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)} (sde:ETA)")


def sde_eta(solver: str) -> float:
    """The noise level ETA of `sde[:ETA]` (0 <= ETA <= 10)."""
    name, _, tail = solver.partition(":")
    try:
        eta = float(tail) if tail else 1.0
    except ValueError:
        eta = float("nan")
    if name != "sde" or not 0 <= eta <= 10:
        raise UserError(f"the stochastic solver is sde or sde:ETA with 0 <= ETA <= 10, got {solver!r}")
    return eta


def ode_step(
    velocity: Velocity, x: Tensor, t: float, dt: float, solver: str = "euler", generator=None
) -> Tensor:
    """One Euler, midpoint or stochastic (sde[:ETA]) step of the flow from t to t + dt."""
    if solver == "euler":
        return x + dt * velocity(x, t)
    if solver.startswith("sde"):
        import torch

        eta = sde_eta(solver)
        v = velocity(x, t)
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        return x + dt * (v - eta * (x - t * v)) + math.sqrt(2 * eta * max(1 - t, 0.0) * dt) * noise
    x_mid = x + 0.5 * dt * velocity(x, t)
    return x + dt * velocity(x_mid, t + 0.5 * dt)


def solve(velocity: Velocity, x: Tensor, steps: int, solver: str = "euler", t0: float = 0.0, t1: float = 1.0,
          generator=None):  # fmt: skip
    """Integrate dx/dt = velocity(x, t) from t0 to t1 with `steps` equal steps."""
    check_solver(solver)
    if steps < 1:
        raise UserError(f"the number of ODE steps must be >= 1, got {steps}")
    dt = (t1 - t0) / steps
    for i in range(steps):
        x = ode_step(velocity, x, t0 + i * dt, dt, solver, generator)
    return Solution(x=x, evals=steps * evals_per_step(solver))

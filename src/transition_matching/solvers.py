"""Fixed-step ODE solvers (Euler, midpoint) over a time interval, counting velocity evaluations."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from runkit.errors import UserError

SOLVERS = ("euler", "midpoint")
Velocity = Callable[[Tensor, float], Tensor]


@dataclass
class Solution:
    """The state at the end of the interval and how many times the velocity was evaluated."""

    x: Tensor
    evals: int


def evals_per_step(solver: str) -> int:
    """Velocity evaluations that one step of `solver` costs."""
    check_solver(solver)
    return 1 if solver == "euler" else 2


def check_solver(solver: str) -> None:
    """Raise a UserError for an unknown solver name."""
    if solver not in SOLVERS:
        raise UserError(f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}")


def ode_step(velocity: Velocity, x: Tensor, t: float, dt: float, solver: str = "euler") -> Tensor:
    """One Euler or midpoint step of dx/dt = velocity(x, t) from t to t + dt."""
    if solver == "euler":
        return x + dt * velocity(x, t)
    x_mid = x + 0.5 * dt * velocity(x, t)
    return x + dt * velocity(x_mid, t + 0.5 * dt)


def solve(velocity: Velocity, x: Tensor, steps: int, solver: str = "euler", t0: float = 0.0, t1: float = 1.0):
    """Integrate dx/dt = velocity(x, t) from t0 to t1 with `steps` equal steps."""
    check_solver(solver)
    if steps < 1:
        raise UserError(f"the number of ODE steps must be >= 1, got {steps}")
    dt = (t1 - t0) / steps
    for i in range(steps):
        x = ode_step(velocity, x, t0 + i * dt, dt, solver)
    return Solution(x=x, evals=steps * evals_per_step(solver))

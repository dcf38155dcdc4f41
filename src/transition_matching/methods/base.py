"""Records and helpers shared by the four methods: settings, loss and sample results, guidance, the start of
sampling, head ODE."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from runkit.errors import UserError
from transition_matching.processes import head_path
from transition_matching.solvers import Solution, check_solver, solve


@dataclass
class MethodConfig:
    """How a method is trained; the fields a method does not use are ignored."""

    name: str = "dtm"
    T: int = 16  # TM steps: trained T of ARTM/FHTM, grid of DTM when dtm_time == "discrete"
    schedule: list[float] | None = None  # custom t/T fractions for ARTM/FHTM, e.g. [0, .5, .75, 1]
    dtm_time: str = "continuous"  # DTM: continuous t/T ~ U[0,1) (any T at sampling) or discrete k/T
    head_draws: int = 1  # (s, Y_0) draws per backbone pass in the head loss
    p_uncond: float = 0.15  # probability of dropping the label (classifier-free guidance)
    time_dist: str = "uniform"  # FM's t and DTM's continuous t/T: uniform or logit_normal[:M,S]
    head_time_dist: str = "uniform"  # the head's s in its flow-matching loss


@dataclass
class SampleOptions:
    """How to sample: TM (or FM ODE) steps, head ODE steps, guidance scale, solvers, KV cache, trajectory."""

    steps: int = 16
    head_steps: int = 4
    cfg: float = 1.0
    solver: str = "euler"  # FM ODE solver
    head_solver: str = "euler"
    cache: bool = True
    trajectory: bool = False

    def check(self) -> None:
        """Raise a UserError for settings no method can use."""
        if self.steps < 1 or self.head_steps < 1:
            raise UserError(f"steps and head steps must be >= 1, got {self.steps} and {self.head_steps}")
        check_solver(self.solver)
        check_solver(self.head_solver)


@dataclass
class LossOutput:
    """The scalar loss to minimise and plain metrics to log."""

    loss: Tensor
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class SampleResult:
    """Samples X_T in tokens, evaluation counts, and optionally the states X_0..X_T."""

    X: Tensor  # (B, n, d)
    backbone_evals: int
    head_evals: int
    trajectory: Tensor | None = None  # (steps + 1, B, n, d)


class TMModel(nn.Module):
    """A backbone plus either a flow head (TM methods) or a linear velocity readout (FM)."""

    def __init__(
        self, backbone: nn.Module, head: nn.Module | None, readout: nn.Module | None, num_classes: int
    ):
        super().__init__()
        self.backbone, self.head, self.readout = backbone, head, readout
        self.num_classes = num_classes

    @property
    def null_class(self) -> int:
        return self.num_classes


def drop_labels(
    labels: Tensor | None, p: float, null: int, generator: torch.Generator | None
) -> Tensor | None:
    """Replace each label by the null class with probability p (classifier-free guidance training)."""
    if labels is None or p <= 0:
        return labels
    drop = torch.rand(labels.shape[0], generator=generator) < p
    return torch.where(drop, torch.full_like(labels, null), labels)


def head_loss(
    head: nn.Module,
    h: Tensor,
    Y: Tensor,
    t: Tensor | None,
    draws: int,
    generator: torch.Generator | None,
    dist: str = "uniform",
) -> Tensor:
    """Flow-matching loss of the head on rows h (N, w), latents Y (N, d), with `draws` (s, Y_0) per row."""
    cond = head.condition(h, t)  # once per backbone row, shared by its draws
    if draws > 1:
        cond, Y = cond.repeat(draws), Y.repeat(draws, 1)
    path = head_path(Y, generator, dist)
    return F.mse_loss(head.step(cond, path.Y_s, path.s), path.target)


@dataclass
class Guidance:
    """Labels as the backbone sees them: with guidance the batch is doubled as [conditional; null]."""

    labels: Tensor | None
    scale: float
    active: bool

    def batch(self, x: Tensor) -> Tensor:
        """Repeat a batch-first tensor for the guided (doubled) batch."""
        return torch.cat([x, x]) if self.active else x

    def combine(self, out: Tensor) -> Tensor:
        """Guided output u + w (c - u) from a doubled output [c; u]."""
        if not self.active:
            return out
        c, u = out.chunk(2)
        return u + self.scale * (c - u)


def guidance(labels: Tensor | None, scale: float, null: int) -> Guidance:
    """Set up guidance: active only with labels and a scale other than 1."""
    if labels is None or scale == 1.0:
        return Guidance(labels, scale, False)
    return Guidance(torch.cat([labels, torch.full_like(labels, null)]), scale, True)


def check_steps(name: str, opts: SampleOptions, T: int) -> None:
    """ARTM and FHTM sample with the T they were trained with."""
    if opts.steps != T:
        raise UserError(f"this {name.upper()} model was trained with T={T}; sample it with --steps {T}")


def start_sampling(
    name: str,
    model: TMModel,
    shape: tuple[int, int, int],
    labels: Tensor | None,
    opts: SampleOptions,
    generator: torch.Generator,
    trained_T: int | None = None,
    noise: bool = True,
) -> tuple[Guidance, Tensor | None]:
    """The start of every method's sample(): check the options (and, given trained_T, that opts.steps equals
    it), set up guidance, and draw X_0 ~ N(0, I) of `shape` as the generator's first draw (None if not noise)."""
    opts.check()
    if trained_T is not None:
        check_steps(name, opts, trained_T)
    g = guidance(labels, opts.cfg, model.null_class)
    X = torch.randn(shape, generator=generator) if noise else None
    return g, X


def solve_head(
    head: nn.Module,
    h: Tensor,
    t: Tensor | None,
    g: Guidance,
    opts: SampleOptions,
    generator: torch.Generator | None,
    token_dim: int,
) -> Solution:
    """Integrate the head ODE from Y_0 ~ N(0, I) over s in [0, 1] for rows h: Y (N, d) and the head evals.

    The part of the head's condition that depends on h (and t) is computed once; each step adds only s."""
    N = h.shape[0] // (2 if g.active else 1)
    Y_0 = torch.randn(N, token_dim, generator=generator)
    cond = head.condition(h, t)

    def velocity(Y: Tensor, s: float) -> Tensor:
        return g.combine(head.step(cond, g.batch(Y), torch.full((1,), s)))

    return solve(velocity, Y_0, opts.head_steps, opts.head_solver, generator=generator)

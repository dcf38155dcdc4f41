"""Flow matching baseline: linear path, velocity read linearly from the backbone, Euler or midpoint ODE."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from transition_matching.methods.base import (
    LossOutput,
    MethodConfig,
    SampleOptions,
    SampleResult,
    TMModel,
    drop_labels,
    start_sampling,
)
from transition_matching.processes import draw_unit_time, interpolate
from transition_matching.solvers import evals_per_step, ode_step


class FM:
    """Conditional flow matching with independent coupling: regress the velocity onto X_T - X_0."""

    name = "fm"
    uses_head = False
    head_uses_t = False

    def __init__(self, cfg: MethodConfig):
        self.cfg = cfg

    def seq_len(self, n: int) -> int:
        """Positions the backbone needs for n tokens."""
        return n

    def velocity(self, model: TMModel, X_t: Tensor, t: Tensor, labels: Tensor | None) -> Tensor:
        """u(X_t, t) from the backbone: (B, n, d) with one t in [0, 1] per sample."""
        B, n, _ = X_t.shape
        h = model.backbone(X_t, t[:, None].expand(B, n), labels)  # (B, n, w)
        return model.readout(h)

    def loss(
        self, model: TMModel, X_T: Tensor, labels: Tensor | None, generator: torch.Generator
    ) -> LossOutput:
        """MSE between the predicted velocity at X_t and X_T - X_0."""
        X_0 = torch.randn(X_T.shape, generator=generator)
        t = draw_unit_time(X_T.shape[0], self.cfg.time_dist, generator)
        labels = drop_labels(labels, self.cfg.p_uncond, model.null_class, generator)
        loss = F.mse_loss(self.velocity(model, interpolate(X_0, X_T, t), t, labels), X_T - X_0)
        return LossOutput(loss, {"train/loss": loss.item()})

    @torch.no_grad()
    def sample(
        self,
        model: TMModel,
        shape: tuple[int, int, int],
        labels: Tensor | None,
        opts: SampleOptions,
        generator: torch.Generator,
    ) -> SampleResult:
        """Integrate the FM ODE from X_0 ~ N(0, I) with opts.steps steps of opts.solver."""
        g, X = start_sampling(self.name, model, shape, labels, opts, generator)  # X: (B, n, d)
        states = [X]

        def u(x: Tensor, t: float) -> Tensor:
            tt = torch.full((x.shape[0] * (2 if g.active else 1),), t)
            return g.combine(self.velocity(model, g.batch(x), tt, g.labels))

        dt = 1.0 / opts.steps
        for k in range(opts.steps):
            X = ode_step(u, X, k * dt, dt, opts.solver, generator)
            if opts.trajectory:
                states.append(X)
        traj = torch.stack(states) if opts.trajectory else None
        return SampleResult(X, opts.steps * evals_per_step(opts.solver), 0, traj)

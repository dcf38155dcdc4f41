"""Difference Transition Matching: shared-noise linear process, latent Y = X_T - X_0, X_{t+1} = X_t + Y / T."""

from __future__ import annotations

import torch
from torch import Tensor

from runkit.errors import UserError
from transition_matching.methods.base import (
    LossOutput,
    MethodConfig,
    SampleOptions,
    SampleResult,
    TMModel,
    drop_labels,
    head_loss,
    solve_head,
    start_sampling,
)
from transition_matching.processes import draw_unit_time, interpolate


class DTM:
    """DTM; trained with continuous t/T ~ U[0, 1) by default, so one model samples with any number of steps."""

    name = "dtm"
    uses_head = True
    head_uses_t = True

    def __init__(self, cfg: MethodConfig):
        if cfg.dtm_time not in ("continuous", "discrete"):
            raise UserError(f"dtm_time must be continuous or discrete, got {cfg.dtm_time!r}")
        self.cfg = cfg

    def seq_len(self, n: int) -> int:
        """Positions the backbone needs for n tokens."""
        return n

    def draw_time(self, B: int, generator: torch.Generator) -> Tensor:
        """t/T per sample: U[0, 1) when continuous, else k/T with k ~ U{0..T-1}."""
        if self.cfg.dtm_time == "continuous":
            return draw_unit_time(B, self.cfg.time_dist, generator)
        return torch.randint(0, self.cfg.T, (B,), generator=generator).float() / self.cfg.T

    def loss(
        self, model: TMModel, X_T: Tensor, labels: Tensor | None, generator: torch.Generator
    ) -> LossOutput:
        """One backbone pass on X_t; the head learns Y = X_T - X_0 per token."""
        B, n, d = X_T.shape
        X_0 = torch.randn(X_T.shape, generator=generator)
        tau = self.draw_time(B, generator)
        X_t = interpolate(X_0, X_T, tau)
        Y = X_T - X_0
        labels = drop_labels(labels, self.cfg.p_uncond, model.null_class, generator)
        h_t = model.backbone(X_t, tau[:, None].expand(B, n), labels)  # (B, n, w)
        t_rows = tau.repeat_interleave(n)  # (B*n,)
        loss = head_loss(
            model.head,
            h_t.reshape(B * n, -1),
            Y.reshape(B * n, d),
            t_rows,
            self.cfg.head_draws,
            generator,
            self.cfg.head_time_dist,
        )
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
        """X_0 ~ N(0, I); T = opts.steps transitions, each one backbone pass and a head ODE for all tokens."""
        g, X = start_sampling(self.name, model, shape, labels, opts, generator)
        B, n, d = shape
        T = opts.steps
        states, backbone_evals, head_evals = [X], 0, 0
        for k in range(T):
            tau = torch.full((g.batch(X).shape[0], n), k / T)
            h_t = model.backbone(g.batch(X), tau, g.labels)  # (B or 2B, n, w)
            backbone_evals += 1
            rows = h_t.reshape(-1, h_t.shape[-1])
            Y = solve_head(model.head, rows, tau.reshape(-1), g, opts, generator, d)
            head_evals += Y.evals
            X = X + Y.x.reshape(B, n, d) / T  # (B, n, d)
            if opts.trajectory:
                states.append(X)
        traj = torch.stack(states) if opts.trajectory else None
        return SampleResult(X, backbone_evals, head_evals, traj)

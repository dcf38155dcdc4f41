"""Autoregressive Transition Matching: independent process, Y = X_{t+1} generated token by token."""

from __future__ import annotations

import torch
from torch import Tensor

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
from transition_matching.nn.backbone import KVCache
from transition_matching.processes import independent_process, parse_schedule


class ARTM:
    """Backbone input [X_t, X_{t+1}] (shifted by one) under the ARTM mask; the head makes token i of X_{t+1}."""

    name = "artm"
    uses_head = True
    head_uses_t = True

    def __init__(self, cfg: MethodConfig):
        self.cfg = cfg
        self.schedule = parse_schedule(cfg.schedule, cfg.T)
        self.T = len(self.schedule) - 1

    def seq_len(self, n: int) -> int:
        """Positions the backbone needs: all of X_t and the first n - 1 tokens of X_{t+1}."""
        return 2 * n - 1

    def loss(
        self, model: TMModel, X_T: Tensor, labels: Tensor | None, generator: torch.Generator
    ) -> LossOutput:
        """Teacher-forced: one backbone pass gives h for every token of X_{t+1} at a random t."""
        B, n, d = X_T.shape
        path = independent_process(X_T, self.schedule, generator)  # (T+1, B, n, d), fresh noise per t
        k = torch.randint(0, self.T, (B,), generator=generator)
        rows = torch.arange(B)
        X_t, X_next = path[k, rows], path[k + 1, rows]  # (B, n, d)
        tau = torch.tensor(self.schedule)[k]  # (B,)
        seq = torch.cat([X_t, X_next[:, :-1]], dim=1)  # (B, 2n-1, d)
        labels = drop_labels(labels, self.cfg.p_uncond, model.null_class, generator)
        h = model.backbone(seq, tau[:, None].expand(B, 2 * n - 1), labels, mode="artm", n_prefix=n)
        h_t = h[:, n - 1 :]  # (B, n, w): position n-1+i predicts token i of X_{t+1}
        loss = head_loss(
            model.head, h_t.reshape(B * n, -1), X_next.reshape(B * n, d), tau.repeat_interleave(n),
            self.cfg.head_draws, generator, self.cfg.head_time_dist,
        )  # fmt: skip
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
        """For each t and each token i: one backbone pass (KV-cached unless opts.cache is off) and a head ODE."""
        g, X = start_sampling(self.name, model, shape, labels, opts, generator, trained_T=self.T)
        B, n, d = shape
        states, backbone_evals, head_evals = [X], 0, 0
        for k in range(self.T):
            t = self.schedule[k]
            X_next = torch.zeros(B, 0, d)
            cache = KVCache() if opts.cache else None
            for i in range(n):
                if cache is None:
                    inp = torch.cat([X, X_next], dim=1)  # (B, n+i, d): recompute everything
                else:
                    inp = X if i == 0 else X_next[:, -1:]  # the prefix once, then one new token
                inp = g.batch(inp)
                h = model.backbone(inp, torch.full(inp.shape[:2], t), g.labels, "artm", n, cache)[:, -1]
                backbone_evals += 1
                tok = solve_head(model.head, h, torch.full((h.shape[0],), t), g, opts, generator, d)
                head_evals += tok.evals
                X_next = torch.cat([X_next, tok.x[:, None]], dim=1)  # (B, i+1, d)
            X = X_next
            if opts.trajectory:
                states.append(X)
        traj = torch.stack(states) if opts.trajectory else None
        return SampleResult(X, backbone_evals, head_evals, traj)

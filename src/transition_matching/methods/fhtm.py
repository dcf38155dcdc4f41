"""Full-History Transition Matching: a causal backbone over [boi, X_1, ..., X_T] and a head without t."""

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


class FHTM:
    """Teacher forcing over T*n + 1 tokens (a zero begin token, then X_1..X_T; X_0 is pure noise and dropped)."""

    name = "fhtm"
    uses_head = True
    head_uses_t = False

    def __init__(self, cfg: MethodConfig):
        self.cfg = cfg
        self.schedule = parse_schedule(cfg.schedule, cfg.T)
        self.T = len(self.schedule) - 1

    def seq_len(self, n: int) -> int:
        """Positions the backbone needs: the input sequence without its last token."""
        return self.T * n

    def input_times(self, n: int) -> Tensor:
        """t/T of the transition each input position feeds: position p predicts a token of X_{p // n + 1}."""
        return torch.tensor(self.schedule[:-1]).repeat_interleave(n)  # (T*n,)

    def sequence(self, X_T: Tensor, generator: torch.Generator) -> Tensor:
        """[boi, X_1, ..., X_T] flattened over tokens: (B, T*n + 1, d), with fresh noise for every t."""
        B, n, d = X_T.shape
        states = independent_process(X_T, self.schedule, generator)[1:]  # (T, B, n, d)
        boi = torch.zeros(B, 1, d)
        return torch.cat([boi, states.permute(1, 0, 2, 3).reshape(B, self.T * n, d)], dim=1)

    def loss(
        self, model: TMModel, X_T: Tensor, labels: Tensor | None, generator: torch.Generator
    ) -> LossOutput:
        """One causal pass over seq[:-1]; the head learns seq[1:] token by token."""
        B, n, d = X_T.shape
        seq = self.sequence(X_T, generator)
        inputs, targets = seq[:, :-1], seq[:, 1:]  # (B, T*n, d) each
        labels = drop_labels(labels, self.cfg.p_uncond, model.null_class, generator)
        h = model.backbone(inputs, self.input_times(n).expand(B, -1), labels, mode="causal")  # (B, T*n, w)
        loss = head_loss(
            model.head,
            h.reshape(-1, h.shape[-1]),
            targets.reshape(-1, d),
            None,
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
        """T*n sequential backbone passes (KV-cached unless opts.cache is off), each followed by a head ODE."""
        g, _ = start_sampling(self.name, model, shape, labels, opts, generator, trained_T=self.T, noise=False)
        B, n, d = shape
        times = self.input_times(n)
        seq = torch.zeros(B, 1, d)  # the begin token
        cache = KVCache() if opts.cache else None
        head_evals = 0
        for p in range(self.T * n):
            inp = seq if cache is None else seq[:, -1:]
            t_in = times[: p + 1] if cache is None else times[p : p + 1]
            inp = g.batch(inp)
            h = model.backbone(inp, t_in.expand(inp.shape[0], -1), g.labels, "causal", 0, cache)[:, -1]
            tok = solve_head(model.head, h, None, g, opts, generator, d)
            head_evals += tok.evals
            seq = torch.cat([seq, tok.x[:, None]], dim=1)  # (B, p+2, d)
        blocks = seq[:, 1:].reshape(B, self.T, n, d).transpose(0, 1)  # (T, B, n, d): X_1..X_T
        traj = None
        if opts.trajectory:  # X_0 is not part of the model; draw it after sampling so samples do not change
            traj = torch.cat([torch.randn((1, B, n, d), generator=generator), blocks])
        return SampleResult(blocks[-1], self.T * n, head_evals, traj)

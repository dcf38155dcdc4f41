"""The small flow head: a MAR-style MLP of AdaLN residual blocks conditioned on (h, s[, t]).

The condition is split in two: `condition(h, t)` is the part that depends only on the backbone output (and the
transition time), computed once per transition; `step(cond, Y_s, s)` is one velocity evaluation of the head ODE,
which adds the s embedding and runs the blocks. `forward` is the two in a row (training)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from transition_matching.nn.embeddings import TimeEmbedding


def _modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale) + shift


class AdaLNBlock(nn.Module):
    """x + gate * MLP(LN(x) * (1 + scale) + shift), with (shift, scale, gate) predicted from the condition."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 3 * width))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale, gate = self.ada(c).chunk(3, dim=-1)
        return x + gate * self.mlp(_modulate(self.norm(x), shift, scale))


@dataclass
class HeadCondition:
    """What a head ODE reuses at every step: c_h = cond(h) [+ t_embed(t)] per row (N, width), and the AdaLN
    projections of all blocks and of the final layer stacked into one matrix (one matmul per step), with the
    `1 +` of every scale folded into its bias."""

    c: Tensor  # (N, width)
    weight: Tensor  # ((3 * depth + 2) * width, width)
    bias: Tensor  # ((3 * depth + 2) * width,)

    def repeat(self, k: int) -> HeadCondition:
        """The condition of the rows repeated k times (as h.repeat(k, 1) would give)."""
        return HeadCondition(self.c.repeat(k, 1), self.weight, self.bias)


class FlowHead(nn.Module):
    """Velocity of the head ODE for one token: (h (N, cond), Y_s (N, d), s (N,), t (N,) or None) -> (N, d)."""

    def __init__(self, token_dim: int, cond_dim: int, width: int, depth: int, use_t: bool):
        super().__init__()
        self.use_t, self.width = use_t, width
        self.embed = nn.Linear(token_dim, width)
        self.cond = nn.Linear(cond_dim, width)
        self.s_embed = TimeEmbedding(width)
        self.t_embed = TimeEmbedding(width) if use_t else None
        self.blocks = nn.ModuleList(AdaLNBlock(width) for _ in range(depth))
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.out = nn.Linear(width, token_dim)
        for layer in (self.final_ada[1], self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def condition(self, h: Tensor, t: Tensor | None = None) -> HeadCondition:
        """The s-independent part of the condition, once per transition: h (N, cond), t (N,) or None."""
        c = self.cond(h)
        if self.t_embed is not None:
            c = c + self.t_embed(t)
        layers = [b.ada[1] for b in self.blocks] + [self.final_ada[1]]
        weight = torch.cat([lin.weight for lin in layers])
        one = torch.zeros(len(layers), 3, self.width, dtype=weight.dtype)
        one[:, 1] = (
            1.0  # (shift, scale, gate) per block, (shift, scale) for the final layer: +1 on each scale
        )
        bias = torch.cat([lin.bias for lin in layers]) + one.flatten()[: weight.shape[0]]
        return HeadCondition(c, weight, bias)

    def step(self, cond: HeadCondition, Y_s: Tensor, s: Tensor) -> Tensor:
        """One velocity evaluation: Y_s (N, d) at head time s, (N,) or one value (1,) shared by all rows."""
        c = cond.c + self.s_embed(s)  # (N, width); a (1, width) s embedding broadcasts
        mods = F.linear(F.silu(c), cond.weight, cond.bias).split(self.width, dim=-1)
        x = self.embed(Y_s)
        for i, block in enumerate(self.blocks):
            shift, scale1, gate = mods[3 * i : 3 * i + 3]
            x = torch.addcmul(x, gate, block.mlp(torch.addcmul(shift, block.norm(x), scale1)))
        shift, scale1 = mods[-2:]
        return self.out(torch.addcmul(shift, self.final_norm(x), scale1))

    def forward(self, h: Tensor, Y_s: Tensor, s: Tensor, t: Tensor | None = None) -> Tensor:
        return self.step(self.condition(h, t), Y_s, s)

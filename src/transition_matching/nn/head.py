"""The small flow head: a MAR-style MLP of AdaLN residual blocks conditioned on (h, s[, t])."""

from __future__ import annotations

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


class FlowHead(nn.Module):
    """Velocity of the head ODE for one token: (h (N, cond), Y_s (N, d), s (N,), t (N,) or None) -> (N, d)."""

    def __init__(self, token_dim: int, cond_dim: int, width: int, depth: int, use_t: bool):
        super().__init__()
        self.use_t = use_t
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

    def forward(self, h: Tensor, Y_s: Tensor, s: Tensor, t: Tensor | None = None) -> Tensor:
        c = self.cond(h) + self.s_embed(s)  # (N, width)
        if self.t_embed is not None:
            c = c + self.t_embed(t)
        x = self.embed(Y_s)
        for block in self.blocks:
            x = block(x, c)
        shift, scale = self.final_ada(c).chunk(2, dim=-1)
        return self.out(_modulate(self.final_norm(x), shift, scale))

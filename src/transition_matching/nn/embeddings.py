"""Time and class embeddings shared by the backbones and the head."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sinusoidal(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Sinusoidal features of t in [0, 1] (any shape) -> (..., dim); t is scaled by 1000 like a DDPM step."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = (t.float() * 1000.0)[..., None] * freqs  # (..., half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return emb if dim % 2 == 0 else torch.cat([emb, torch.zeros_like(emb[..., :1])], dim=-1)


class TimeEmbedding(nn.Module):
    """t in [0, 1] -> a learned vector of size `width` (sinusoidal features through a small MLP)."""

    def __init__(self, width: int, freq_dim: int = 64):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(sinusoidal(t, self.freq_dim))


class ClassEmbedding(nn.Module):
    """Labels 0..K-1 plus a null class K (unconditional / classifier-free guidance) -> vectors."""

    def __init__(self, num_classes: int, width: int):
        super().__init__()
        self.null = num_classes
        self.table = nn.Embedding(num_classes + 1, width)

    def forward(self, labels: Tensor | None, batch: int) -> Tensor:
        if labels is None:
            labels = torch.full((batch,), self.null, dtype=torch.long)
        return self.table(labels)

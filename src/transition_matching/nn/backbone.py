"""Backbones over tokens: a transformer with full, ARTM and causal attention (KV cache) and a 2D MLP."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from transition_matching.nn.embeddings import ClassEmbedding, TimeEmbedding

ATTENTION = ("full", "artm", "causal")


def attention_mask(mode: str, q_pos: Tensor, k_pos: Tensor, n_prefix: int = 0) -> Tensor | None:
    """Which keys each query sees (True = attend), from absolute positions: (m, L) or None for full.

    artm: every position sees the prefix (the n tokens of X_t) and itself and earlier positions.
    """
    if mode == "full":
        return None
    causal = k_pos[None, :] <= q_pos[:, None]  # (m, L)
    if mode == "causal":
        return causal
    if mode == "artm":
        return causal | (k_pos[None, :] < n_prefix)
    raise ValueError(f"unknown attention mode {mode!r}")


@dataclass
class KVCache:
    """Keys and values of the positions seen so far, one entry per transformer block."""

    keys: list[Tensor] = field(default_factory=list)  # each (B, H, L, dh)
    values: list[Tensor] = field(default_factory=list)

    @property
    def length(self) -> int:
        return self.keys[0].shape[2] if self.keys else 0


class Attention(nn.Module):
    """Multi-head self-attention that can extend a KV cache."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor, mask: Tensor | None, cache: KVCache | None, layer: int) -> Tensor:
        B, L, C = x.shape
        q, k, v = (
            self.qkv(x).reshape(B, L, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        )  # (B,H,L,dh)
        if cache is not None:
            if layer < len(cache.keys):
                k = torch.cat([cache.keys[layer], k], dim=2)
                v = torch.cat([cache.values[layer], v], dim=2)
                cache.keys[layer], cache.values[layer] = k, v
            else:
                cache.keys.append(k)
                cache.values.append(v)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, L, dh)
        return self.proj(out.transpose(1, 2).reshape(B, L, C))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, width: int, heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.mlp = nn.Sequential(
            nn.Linear(width, mlp_ratio * width), nn.GELU(), nn.Linear(mlp_ratio * width, width)
        )

    def forward(self, x: Tensor, mask: Tensor | None, cache: KVCache | None, layer: int) -> Tensor:
        x = x + self.attn(self.ln1(x), mask, cache, layer)
        return x + self.mlp(self.ln2(x))


class TransformerBackbone(nn.Module):
    """Tokens (B, L, d) with per-token times t/T and a class label -> features h (B, L, width)."""

    def __init__(self, token_dim: int, width: int, depth: int, heads: int, max_len: int, num_classes: int):
        super().__init__()
        self.width, self.max_len = width, max_len
        self.embed = nn.Linear(token_dim, width)
        self.pos = nn.Parameter(torch.randn(max_len, width) * 0.02)
        self.time = TimeEmbedding(width)
        self.label = ClassEmbedding(num_classes, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(depth))
        self.ln_f = nn.LayerNorm(width)

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        labels: Tensor | None,
        mode: str = "full",
        n_prefix: int = 0,
        cache: KVCache | None = None,
    ) -> Tensor:
        B, L, _ = x.shape
        start = cache.length if cache is not None else 0
        if start + L > self.max_len:
            raise ValueError(
                f"sequence of {start + L} tokens exceeds the backbone's {self.max_len} positions"
            )
        q_pos = torch.arange(start, start + L)
        h = self.embed(x) + self.pos[q_pos] + self.time(t) + self.label(labels, B)[:, None]  # (B, L, width)
        mask = attention_mask(mode, q_pos, torch.arange(start + L), n_prefix)
        for i, block in enumerate(self.blocks):
            h = block(h, mask, cache, i)
        return self.ln_f(h)


class MLPBackbone(nn.Module):
    """A residual MLP for one-token data (2D points): (B, 1, d) -> (B, 1, width); the cache is unused."""

    max_len = 1

    def __init__(self, token_dim: int, width: int, depth: int, num_classes: int):
        super().__init__()
        self.width = width
        self.embed = nn.Linear(token_dim, width)
        self.time = TimeEmbedding(width)
        self.label = ClassEmbedding(num_classes, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.LayerNorm(width), nn.Linear(width, 2 * width), nn.SiLU(), nn.Linear(2 * width, width)
            )
            for _ in range(depth)
        )
        self.ln_f = nn.LayerNorm(width)

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        labels: Tensor | None,
        mode: str = "full",
        n_prefix: int = 0,
        cache: KVCache | None = None,
    ) -> Tensor:
        if x.shape[1] != 1 or (cache is not None and cache.length):
            raise ValueError("the MLP backbone takes exactly one token; use the transformer backbone")
        h = self.embed(x) + self.time(t) + self.label(labels, x.shape[0])[:, None]  # (B, 1, width)
        for block in self.blocks:
            h = h + block(h)
        return self.ln_f(h)

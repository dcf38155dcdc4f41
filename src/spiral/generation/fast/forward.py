"""The fast engine's forward step: a hand-written Llama forward over `Weights` and a `Cache`.

With the native kernels (`spiral.generation.native`, C++ compiled on first use; used when a compiler is present
and the attention shape is supported): per layer 4 matmuls and 3 native calls, for decode steps and prefill
alike, on real tokens only: RoPE + cache write + attention (shared prefix and own slots under one softmax, fp32
accumulation, AVX512-BF16 dot products on bf16 caches where the CPU has them), residual add + RMSNorm, SiLU * up.
Without them (torch path): prefill attention as one SDPA call per layer; a decode step reads the prefix keys and
values once per group (attention split into a prefix part and an own part under one softmax); grouped-query
attention without repeating K/V. RoPE tables come once from the model's own rotary module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from spiral.generation.fast.cache import Cache
from spiral.generation.fast.weights import Weights, linear


class LlamaForward:
    """Runs tokens through the layers of `weights`, writing their K/V into a cache; `kernels` None: torch ops."""

    def __init__(self, base, cfg, weights: Weights, kernels) -> None:
        self.weights, self.kernels, self.dtype = weights, kernels, weights.dtype
        self.n_heads, self.n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.eps = cfg.rms_norm_eps
        self.max_positions = cfg.max_position_embeddings
        # RoPE tables from the model's own rotary module (any rope type), computed once for every position.
        with torch.no_grad():
            pos = torch.arange(self.max_positions)[None]
            probe = torch.zeros(1, dtype=torch.float32)
            cos, sin = base.model.rotary_emb(probe, pos)  # (1, P, D) each, fp32
        self.cos, self.sin = (
            cos[0].to(self.dtype),
            sin[0].to(self.dtype),
        )  # HF casts them to the activation dtype

    def rms(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """RMSNorm exactly as Hugging Face Llama computes it (fp32 statistics, cast back, then scale)."""
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return weight * h.to(x.dtype)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return linear(h, self.weights.lm_head)  # (B, V)

    def __call__(self, ids: torch.Tensor, pos: torch.Tensor, cache: Cache, s0: int) -> torch.Tensor:
        """Run tokens `ids` (B, n) at own-cache slots [s0, s0+n) with RoPE positions `pos`; last hidden (B, C).

        The slots' K/V are written into `cache`; each query attends to its group's prefix, then to the valid
        own slots up to its own (always including itself, so that padding queries stay finite).
        """
        B, n = ids.shape
        if self.kernels is not None:
            return self._native(ids, pos, cache, s0)
        H, Hkv, D = self.n_heads, self.n_kv, self.head_dim
        end = s0 + n
        # Prefill runs the projections and the MLP on the real tokens only (`flat`), not on the left padding:
        # prompts' own parts differ in length, and padding to the longest doubled the prefill's matmuls.
        flat = None
        if n > 1:
            real = cache.valid[:, s0:end].reshape(-1)
            if not bool(real.all()):
                flat = real.nonzero().squeeze(1)
        w = self.weights
        x = F.embedding(ids.reshape(-1)[flat] if flat is not None else ids, w.embed)  # (B, n, C) or (N, C)
        cos, sin = self.cos[pos][:, None], self.sin[pos][:, None]  # (B, 1, n, D)
        half = D // 2
        # A decode step attends to every slot of the (zero-initialised) cache, masking the unwritten ones: a slice
        # [:end] of it is not contiguous, and bf16 bmm copied it for each layer (a third of a step at 64 rows).
        span = cache.k.shape[3] if n == 1 else end
        slot = torch.arange(span)
        query_slot = s0 + torch.arange(n)
        mask = (cache.valid[:, None, :span] & (slot <= query_slot[:, None])) | (slot == query_slot[:, None])
        own_bias = torch.zeros(mask.shape).masked_fill_(~mask, float("-inf"))  # (B, n, span)
        own_bias = own_bias.to(self.dtype)[:, None]  # (B, 1, n, span); decode (n = 1) broadcasts over heads
        spans = cache.spans() if cache.prefix is not None and n == 1 else []

        def rope(t: torch.Tensor) -> torch.Tensor:
            rot = torch.cat([-t[..., half:], t[..., :half]], dim=-1)
            return t * cos + rot * sin

        for li, layer in enumerate(w.layers):
            h = self.rms(x, layer.attn_norm)
            qkv = linear(h, layer.wqkv)  # (B, n, (H + 2 Hkv) D)
            if flat is not None:  # back to (B, n, .) with zeros at the padding (masked as keys)
                qkv = qkv.new_zeros(B * n, qkv.shape[-1]).index_copy_(0, flat, qkv).view(B, n, -1)
            q, k, v = qkv.split([H * D, Hkv * D, Hkv * D], dim=-1)
            q = rope(q.view(B, n, H, D).transpose(1, 2))  # (B, H, n, D)
            cache.k[li, :, :, s0:end] = rope(k.view(B, n, Hkv, D).transpose(1, 2))
            cache.v[li, :, :, s0:end] = v.view(B, n, Hkv, D).transpose(1, 2)
            if n > 1:
                att = self._prefill_attention(q, li, cache, end, own_bias)
            else:
                att = self._decode_attention(q, li, cache, span, own_bias, spans)
            att = att.view(B, H, n, D).transpose(1, 2).reshape(B, n, H * D)
            if flat is not None:
                att = att.view(B * n, H * D).index_select(0, flat)
            x = x + linear(att, layer.wo)
            h = self.rms(x, layer.mlp_norm)
            gate, up = linear(h, layer.wgu).chunk(2, dim=-1)  # (B, n, F) each
            x = x + linear(F.silu(gate) * up, layer.wdown)
        if flat is not None:  # each row's last token is real (left padding): its place among the real tokens
            return self.rms(x[real.view(B, n).sum(1).cumsum(0) - 1], w.norm)
        return self.rms(x[:, -1], w.norm)  # (B, C)

    def _native(self, ids: torch.Tensor, pos: torch.Tensor, cache: Cache, s0: int) -> torch.Tensor:
        """The forward with the fused kernels: 4 matmuls and 3 native calls per layer, on real tokens only.

        The native attention applies RoPE, writes the tokens' slots and attends to the group prefix and the
        valid own slots up to each token's; norms are fused with the residual adds. Last hidden state, normed.
        """
        B, n = ids.shape
        slots = row_start = None
        if n == 1:  # a decode step: one token per row, all at slot s0
            tok, pos = ids[:, 0], pos[:, 0].contiguous()
        else:  # prefill: the real (non-padding) tokens in row-major order, each row's in slot order
            real = cache.valid[:, s0 : s0 + n]
            flat = real.reshape(-1).nonzero().squeeze(1)
            tok, pos = ids.reshape(-1)[flat], pos.reshape(-1)[flat]
            slots = (flat % n + s0).to(torch.int32)
            row_start = torch.zeros(B + 1, dtype=torch.int64)
            torch.cumsum(real.sum(1), 0, out=row_start[1:])
        k, w = self.kernels, self.weights
        x = F.embedding(tok, w.embed)  # (N, C), the residual stream (updated in place)
        h = torch.empty_like(x)
        k.add_rms(x, None, w.layers[0].attn_norm, h, self.eps)
        H, D = self.n_heads, self.head_dim
        att = x.new_empty(len(tok), H * D)
        pre = cache.prefix
        prefix_slots = 0 if pre is None else pre.bias.shape[1]
        for li, layer in enumerate(w.layers):
            qkv = linear(h, layer.wqkv)  # (N, (H + 2 Hkv) D)
            k.attend(
                qkv, pos, self.cos, self.sin, cache.k, cache.v, cache.valid, cache.group,
                None if pre is None else pre.k, None if pre is None else pre.v, prefix_slots,
                None if pre is None else pre.start, att, H, self.n_kv, s0, D**-0.5,
                layer=li, slots=slots, row_start=row_start, rowmap=cache.rows, own_start=cache.own_start,
            )  # fmt: skip
            k.add_rms(x, linear(att, layer.wo), layer.mlp_norm, h, self.eps)
            gu = linear(h, layer.wgu)  # (N, 2 F)
            act = gu.new_empty(len(tok), gu.shape[1] // 2)
            k.silu_mul(gu, act)
            last = li + 1 == len(w.layers)
            norm = w.norm if last else w.layers[li + 1].attn_norm
            k.add_rms(x, linear(act, layer.wdown), norm, h, self.eps)
        return h if row_start is None else h[row_start[1:] - 1]  # each row's last token (left padding)

    def _prefill_attention(self, q, li, cache: Cache, end: int, own_bias) -> torch.Tensor:
        """Prompt queries (B, H, n, D) over their group's prefix and their own slots [0, end), in one SDPA call.

        Each row's keys are its group's prefix followed by its own slots: a copy of the prefix per row, cheap once
        per prompt batch, which lets torch's fused attention kernel do the work (no (B, H, n, C + end) scores).
        """
        B, _, n, _ = q.shape
        G = self.n_heads // self.n_kv
        keys, values = cache.k[li, :, :, :end], cache.v[li, :, :, :end]
        bias = own_bias  # (B, 1, n, end)
        if cache.prefix is not None:
            g = cache.group
            keys = torch.cat([cache.prefix.k[li][g], keys], dim=2)
            values = torch.cat([cache.prefix.v[li][g], values], dim=2)
            pre = cache.prefix.bias[g][:, None, None, :].expand(B, 1, n, -1)
            bias = torch.cat([pre, bias], dim=-1)
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=bias, enable_gqa=G > 1)

    def _decode_attention(self, q, li, cache: Cache, span: int, own_bias, spans) -> torch.Tensor:
        """One query per row (B, H, 1, D): prefix keys read once per group, own slots [0, span) per row."""
        B, H, _, D = q.shape
        Hkv = self.n_kv
        G = H // Hkv
        scale = D**-0.5
        q = q.reshape(B, Hkv, G, D)  # the G query heads of a KV head share its keys
        keys, values = cache.k[li, :, :, :span], cache.v[li, :, :, :span]  # (B, Hkv, span, D)
        scores = (q @ keys.transpose(-1, -2)) * scale + own_bias  # (B, Hkv, G, span)
        if spans:  # prefix keys are read once per group, for all of its rows at once
            pre = []
            for g, a, b in spans:
                qg = q[a:b].transpose(0, 1).reshape(Hkv, (b - a) * G, D)
                sg = (qg @ cache.prefix.k[li, g].transpose(-1, -2)) * scale + cache.prefix.bias[g]
                pre.append(sg.view(Hkv, b - a, G, -1).transpose(0, 1))
            scores = torch.cat([torch.cat(pre), scores], dim=-1)  # (B, Hkv, G, C + span)
        probs = torch.softmax(scores, dim=-1)
        att = probs[..., -span:] @ values  # (B, Hkv, G, D)
        if spans:
            Cp = probs.shape[-1] - span
            for g, a, b in spans:
                pg = probs[a:b, ..., :Cp].transpose(0, 1).reshape(Hkv, (b - a) * G, Cp)
                att[a:b] += (pg @ cache.prefix.v[li, g]).view(Hkv, b - a, G, D).transpose(0, 1)
        return att.view(B, H, 1, D)

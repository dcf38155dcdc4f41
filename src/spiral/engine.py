"""A faster generation engine for Llama-architecture policies, behind the interface of `rollout.Generator`.

`FastGenerator` runs its own forward pass over the policy's (LoRA-merged) weights instead of the Hugging
Face module, with no per-step framework overhead:
- fused QKV and gate/up projections; bf16 weights packed once per weight update: for the native bf16 matmul
  (`spiral.native`, AVX512-BF16: it prefetches the weights it reads next, which a decode step streams from
  memory) or else for oneDNN where that gives F.linear's results;
- native kernels (`spiral.native`, C++ compiled on first use; used when a compiler is present and the attention
  shape is supported, `native=False` or SPIRAL_NATIVE=0 for the torch path): per layer 4 matmuls and 3 native
  calls, for decode steps and prefill alike, on real tokens only:
  RoPE + cache write + attention (shared prefix and own slots under one softmax, fp32 accumulation, AVX512-BF16
  dot products on bf16 caches where the CPU has them), residual add + RMSNorm, SiLU * up; and the sampler;
- without them (torch path): a KV cache whose slot axis is shared by all rows (left padding aligns them), grown
  by a few slots at a time, a decode step attending to all its slots; prefill attention as one SDPA call per
  layer; prefix keys and values read once per group each step (attention split into a prefix part and an own
  part under one softmax); grouped-query attention without repeating K/V;
- shared prompt prefixes (`spiral.model.plan_prefixes`) computed once and kept once per group, and stored across
  calls until the weights change (`prefix_cache_mb`, least recently used first out): self-play sends the same
  system prompt and rules every round, so later rounds compute only each prompt's own part;
- under the native kernels, attention skips the blocks of a row's own cache that hold only its prompt's left
  padding (`Cache.own_start`);
- RoPE tables computed once from the model's own rotary module;
- finished rows compacted out of the batch: at once under the native kernels (a row map into the cache, no
  copy), else in bulk once an eighth of the rows has finished (the cache is copied);
- tokens drawn from the same distribution as `rollout.sample_tokens` by inverse CDF (far cheaper than
  `torch.multinomial` over a 49k vocabulary), with the same behaviour log-probs the learner recomputes.
`load_weights(policy)` re-packs the weights (a copy of ~0.5 GB for SmolLM2 in fp32, 0.1-0.3 s) and drops the
stored prefixes.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from spiral.model import is_peft, merged_state_dict, plan_prefixes
from spiral.native import PackedLinear
from spiral.rollout import Generation, Sampling, sample_tokens, stop_on_rule

SUPPORTED = ("llama",)


def sample_cdf(
    logits: torch.Tensor,
    temperature: float,
    top_p: float,
    generator: torch.Generator | None,
    kernels=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same distribution and log-probs as `rollout.sample_tokens`, drawn by inverse CDF (one uniform per row).

    `torch.multinomial` draws one exponential per vocabulary entry (~100 ms a step at 64 rows x 49k ids on
    this CPU); a float64 cumulative sum and a binary search cost a few ms, the native kernel (`kernels`,
    spiral.native) about 1 ms with the same uniforms. Greedy and top_p < 1 defer to `sample_tokens` (top_p
    truncation is rare: the presets train with top_p = 1).
    """
    if temperature == 0 or top_p < 1.0:
        return sample_tokens(logits, temperature, top_p, generator)
    if kernels is not None and logits.is_contiguous():  # the same draw in one native pass per row
        u = torch.rand(len(logits), generator=generator, dtype=torch.float64)
        return kernels.sample(logits, u, temperature)
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)  # (B, V)
    cdf = logp.double().exp_().cumsum_(-1)  # (B, V)
    u = torch.rand((len(cdf), 1), generator=generator, dtype=torch.float64) * cdf[:, -1:]
    ids = torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.shape[-1] - 1).squeeze(-1)  # P(id) = p(id)
    return ids, logp.gather(-1, ids[:, None]).squeeze(-1)


def can_prepack(dtype: torch.dtype) -> bool:
    """Whether weights of `dtype` can be prepacked for oneDNN with results equal to `F.linear` (bf16 on CPU).

    A prepacked weight skips the reorder oneDNN otherwise does on every call: measured here (2 threads, AVX512-BF16)
    1.2x (M = 64) to 2.7x (M = 8) faster bf16 matmuls for SmolLM2's shapes, bit for bit the same results. fp32
    is left to MKL, whose results the Hugging Face forward reproduces exactly.
    """
    if dtype != torch.bfloat16 or not torch.backends.mkldnn.is_available():
        return False
    try:
        w, x = torch.randn(48, 32, dtype=dtype), torch.randn(5, 32, dtype=dtype)
        return torch.equal(linear(x, pack_linear(w)), F.linear(x, w))
    except (RuntimeError, AttributeError):  # a build without these oneDNN ops
        return False


def pack_linear(w: torch.Tensor) -> torch.Tensor:
    """`w` (out, in) reordered into oneDNN's blocked layout (an opaque mkldnn tensor for `linear`)."""
    return torch.ops.mkldnn._reorder_linear_weight(w, 64)


def linear(x: torch.Tensor, w: torch.Tensor | PackedLinear) -> torch.Tensor:
    """x @ w.T for a plain weight, one prepacked for oneDNN (`pack_linear`) or for the native bf16 matmul."""
    if isinstance(w, PackedLinear):
        return w.kernels.linear(x, w)
    if w.is_mkldnn:
        return torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], "")
    return F.linear(x, w)


@dataclass
class Layer:
    """One decoder layer's packed weights (rows of W are output features, as in nn.Linear)."""

    attn_norm: torch.Tensor  # (C,)
    wqkv: torch.Tensor | PackedLinear  # ((H + 2 Hkv) D, C)
    wo: torch.Tensor | PackedLinear  # (C, H D)
    mlp_norm: torch.Tensor  # (C,)
    wgu: torch.Tensor | PackedLinear  # (2 F, C)
    wdown: torch.Tensor | PackedLinear  # (C, F)


@dataclass
class Prefix:
    """K/V of the shared prompt prefixes, one row per group, stored once and read once per group per step."""

    k: torch.Tensor  # (L, Gr, Hkv, C, D); under the native kernels their layout (native.Kernels.cache_shapes)
    v: torch.Tensor  # (L, Gr, Hkv, C, D); likewise
    bias: torch.Tensor  # (Gr, C) float: 0 for a real token, -inf for left padding
    start: torch.Tensor  # (Gr,) int32: first real slot of each group (the padding is on the left)


@dataclass
class Cache:
    """Static KV cache of each row's own tokens (after its group prefix); slot s is aligned across rows."""

    k: torch.Tensor  # (L, B, Hkv, T, D); under the native kernels their layout (native.Kernels.cache_shapes)
    v: torch.Tensor  # (L, B, Hkv, T, D); likewise
    valid: torch.Tensor  # (B, T) bool: slot holds a real token of the row
    group: torch.Tensor  # (B,) prefix group of each row, non-decreasing
    prefix: Prefix | None = None
    # native kernels: the cache row of each batch row (None: the same); compaction only drops entries
    rows: torch.Tensor | None = None
    # native kernels: (R,) int32 first slot of each cache row that holds a token (its prompt's left padding before)
    own_start: torch.Tensor | None = None

    def spans(self) -> list[tuple[int, int, int]]:
        """(group, first row, end row) of each run of rows sharing a prefix."""
        groups, counts = torch.unique_consecutive(self.group, return_counts=True)
        ends = counts.cumsum(0).tolist()
        return [(g, e - c, e) for g, c, e in zip(groups.tolist(), counts.tolist(), ends, strict=True)]


def _config(policy: nn.Module):
    base = policy.get_base_model() if is_peft(policy) else policy
    cfg = base.config
    if (
        cfg.model_type not in SUPPORTED
        or getattr(cfg, "attention_bias", False)
        or getattr(cfg, "mlp_bias", False)
    ):
        raise ValueError(
            f"FastGenerator supports bias-free Llama models, not {cfg.model_type!r}; use rollout.Generator instead"
        )
    if getattr(cfg, "hidden_act", "silu") != "silu":
        raise ValueError(
            f"FastGenerator needs hidden_act=silu, got {cfg.hidden_act!r}; use rollout.Generator"
        )
    return base, cfg


class FastGenerator:
    """Batched sampling with a hand-written Llama forward, static KV cache and shared-prefix prefill.

    Same interface as `rollout.Generator`: `generate(prompts, sampling)`, `load_weights(policy)`,
    `get_state()` / `set_state()`. Holds its own copy of the weights in `dtype`.
    """

    def __init__(
        self,
        policy: nn.Module,
        eos_ids: list[int],
        pad_id: int,
        dtype: torch.dtype = torch.bfloat16,
        batch_size: int = 32,
        seed: int = 0,
        share_prefix: bool = True,
        compact_fraction: float = 0.125,
        prepack: bool | None = None,
        grow: int = 32,
        native: bool | None = None,
        prefix_cache_mb: float = 256,
        native_gemm: bool | None = None,
    ) -> None:
        base, cfg = _config(policy)
        # Fused native decode kernels (spiral.native): None = use them when they build here.
        self.kernels = None
        if native is not False and dtype in (torch.float32, torch.bfloat16):
            from spiral import native as native_mod

            self.kernels = native_mod.load()
            if self.kernels is not None and not self.kernels.supports(*self._attention_shape(cfg)):
                self.kernels = None
            if native and self.kernels is None:
                raise RuntimeError(
                    f"native decode kernels unavailable: {native_mod.error or 'unsupported shape'}"
                )
        # Packed weights (prepack None: where a packed matmul exists): the native bf16 matmul (native_gemm None:
        # where it is built and wanted, spiral.native.gemm_wanted; False: oneDNN's matmuls beside the native
        # attention, for comparisons; True: wherever it is built), else oneDNN's.
        native_gemm = (
            native_gemm is not False
            and self.kernels is not None
            and self.kernels.has_gemm
            and dtype == torch.bfloat16
            and (native_gemm or native_mod.gemm_wanted())
        )
        self.prepack = (native_gemm or can_prepack(dtype)) if prepack is None else prepack
        self.native_gemm = native_gemm and self.prepack
        # Torch path: the own cache starts with room for `grow` new tokens and grows by `grow` slots when full: a
        # decode step attends to all its slots, so a cache sized for max_new_tokens up front would read mostly
        # empty slots. (The native kernels attend to written slots only; their cache is sized up front.)
        self.grow = grow
        self.dtype, self.batch_size, self.pad_id, self.share_prefix = dtype, batch_size, pad_id, share_prefix
        self.compact_fraction = compact_fraction  # compact the batch once this share of its rows has finished
        self.eos_ids = torch.tensor(sorted(set(eos_ids)))
        self.stop_rule = None  # optional prompting.BoxStop: end a row once its response holds a box
        self.rng = torch.Generator().manual_seed(seed)
        # wall and process-CPU seconds of prefill and decode, decode steps and row-steps (for benchmarks)
        self.timing = dict.fromkeys(("prefill_s", "prefill_cpu_s", "decode_s", "decode_cpu_s"), 0.0)
        self.timing.update(
            decode_steps=0, decode_row_steps=0, prefix_tokens_computed=0, prefix_tokens_reused=0
        )
        # K/V of shared prompt prefixes computed by earlier calls (the same system prompt and rules come back each
        # round of self-play), keyed by their tokens; valid for the current weights only (load_weights clears it)
        self.prefix_cache_mb = prefix_cache_mb
        self._prefixes: OrderedDict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self.n_heads, self.n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.eps = cfg.rms_norm_eps
        self.max_positions = cfg.max_position_embeddings
        # RoPE tables from the model's own rotary module (any rope type), computed once for every position.
        with torch.no_grad():
            pos = torch.arange(self.max_positions)[None]
            probe = torch.zeros(1, dtype=torch.float32)
            cos, sin = base.model.rotary_emb(probe, pos)  # (1, P, D) each, fp32
        self.cos, self.sin = cos[0].to(dtype), sin[0].to(dtype)  # HF casts them to the activation dtype
        self.load_weights(policy)

    @staticmethod
    def _attention_shape(cfg) -> tuple[int, int, int]:
        heads = cfg.num_attention_heads
        return heads, cfg.num_key_value_heads, getattr(cfg, "head_dim", None) or cfg.hidden_size // heads

    # ----- weights -----

    def load_weights(self, policy: nn.Module) -> None:
        """Pack the policy's current (LoRA-merged) weights into fused `dtype` tensors."""
        sd = merged_state_dict(policy)
        dt = self.dtype
        self.clear_prefix_cache()  # stored prefix K/V belong to the previous weights

        def w(
            key: str, copy: bool = True
        ) -> torch.Tensor:  # own copies: the learner updates its tensors in place
            return sd[key].detach().to(dt, copy=copy).contiguous()

        onednn = self.prepack and can_prepack(dt)  # for weights the native matmul declines (or all)

        def pack(t: torch.Tensor) -> torch.Tensor | PackedLinear:
            packed = self.kernels.pack(t) if self.native_gemm else None
            if packed is not None:
                return packed
            return pack_linear(t) if onednn else t

        layers = []
        i = 0
        while f"model.layers.{i}.self_attn.q_proj.weight" in sd:
            p = f"model.layers.{i}."
            layers.append(
                Layer(
                    attn_norm=w(p + "input_layernorm.weight"),
                    wqkv=pack(torch.cat([w(p + f"self_attn.{n}_proj.weight", False) for n in "qkv"])),
                    wo=pack(w(p + "self_attn.o_proj.weight")),
                    mlp_norm=w(p + "post_attention_layernorm.weight"),
                    wgu=pack(
                        torch.cat([w(p + "mlp.gate_proj.weight", False), w(p + "mlp.up_proj.weight", False)])
                    ),
                    wdown=pack(w(p + "mlp.down_proj.weight")),
                )
            )
            i += 1
        self.layers = layers
        self.embed = w("model.embed_tokens.weight")  # (V, C)
        self.norm = w("model.norm.weight")
        tied = (
            "lm_head.weight" not in sd
            or sd["lm_head.weight"].data_ptr() == sd["model.embed_tokens.weight"].data_ptr()
        )
        self.lm_head = pack(self.embed if tied else w("lm_head.weight"))

    def get_state(self) -> torch.Tensor:
        """The sampling RNG state (for checkpoints)."""
        return self.rng.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        """Restore the sampling RNG state."""
        self.rng.set_state(state)

    # ----- forward -----

    def _rms(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """RMSNorm exactly as Hugging Face Llama computes it (fp32 statistics, cast back, then scale)."""
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return weight * h.to(x.dtype)

    def _forward(self, ids: torch.Tensor, pos: torch.Tensor, cache: Cache, s0: int) -> torch.Tensor:
        """Run tokens `ids` (B, n) at own-cache slots [s0, s0+n) with RoPE positions `pos`; last hidden (B, C).

        The slots' K/V are written into `cache`; each query attends to its group's prefix, then to the valid
        own slots up to its own (always including itself, so that padding queries stay finite).
        """
        B, n = ids.shape
        if self.kernels is not None:
            return self._forward_native(ids, pos, cache, s0)
        H, Hkv, D = self.n_heads, self.n_kv, self.head_dim
        end = s0 + n
        # Prefill runs the projections and the MLP on the real tokens only (`flat`), not on the left padding:
        # prompts' own parts differ in length, and padding to the longest doubled the prefill's matmuls.
        flat = None
        if n > 1:
            real = cache.valid[:, s0:end].reshape(-1)
            if not bool(real.all()):
                flat = real.nonzero().squeeze(1)
        x = F.embedding(ids.reshape(-1)[flat] if flat is not None else ids, self.embed)  # (B, n, C) or (N, C)
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

        for li, layer in enumerate(self.layers):
            h = self._rms(x, layer.attn_norm)
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
            h = self._rms(x, layer.mlp_norm)
            gate, up = linear(h, layer.wgu).chunk(2, dim=-1)  # (B, n, F) each
            x = x + linear(F.silu(gate) * up, layer.wdown)
        if flat is not None:  # each row's last token is real (left padding): its place among the real tokens
            return self._rms(x[real.view(B, n).sum(1).cumsum(0) - 1], self.norm)
        return self._rms(x[:, -1], self.norm)  # (B, C)

    def _forward_native(self, ids: torch.Tensor, pos: torch.Tensor, cache: Cache, s0: int) -> torch.Tensor:
        """`_forward` with the fused kernels: 4 matmuls and 3 native calls per layer, on real tokens only.

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
        k = self.kernels
        x = F.embedding(tok, self.embed)  # (N, C), the residual stream (updated in place)
        h = torch.empty_like(x)
        k.add_rms(x, None, self.layers[0].attn_norm, h, self.eps)
        H, D = self.n_heads, self.head_dim
        att = x.new_empty(len(tok), H * D)
        pre = cache.prefix
        prefix_slots = 0 if pre is None else pre.bias.shape[1]
        for li, layer in enumerate(self.layers):
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
            last = li + 1 == len(self.layers)
            norm = self.norm if last else self.layers[li + 1].attn_norm
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

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        return linear(h, self.lm_head)  # (B, V)

    def _new_cache(self, B: int, T: int, group: torch.Tensor, prefix: Prefix | None = None) -> Cache:
        lead = (len(self.layers), B, self.n_kv)
        if self.kernels is None:
            # Zeros: the torch decode step reads the unwritten slots too (masked; 0 * garbage could be NaN).
            shape = (*lead, T, self.head_dim)
            k, v = torch.zeros(shape, dtype=self.dtype), torch.zeros(shape, dtype=self.dtype)
        else:  # the native kernels' layouts (spiral.native.Kernels.cache_shapes), slots in blocks of 16
            T = -(-T // 16) * 16
            k_shape, v_shape = self.kernels.cache_shapes(self.dtype, lead, T, self.head_dim)
            # no fill: the kernel masks unwritten key slots and zeroes what it reads of unwritten value slots
            k, v = torch.empty(k_shape, dtype=self.dtype), torch.empty(v_shape, dtype=self.dtype)
        return Cache(k, v, torch.zeros((B, T), dtype=torch.bool), group, prefix)

    def _resize(self, cache: Cache, keep: torch.Tensor, T: int, written: int) -> Cache:
        """A cache of the rows `keep` with `T` slots, holding the first `written` slots of `cache`.

        Under the native kernels the cache holds every slot from the start and rows only leave the batch: the
        kept rows' entries of the row map, no copy.
        """
        if self.kernels is not None:
            if cache.valid.shape[1] < T:
                raise RuntimeError("the native cache is sized for max_new_tokens up front and never grows")
            rows = torch.arange(len(cache.group)) if cache.rows is None else cache.rows
            return Cache(
                cache.k, cache.v, cache.valid, cache.group[keep], cache.prefix, rows[keep], cache.own_start
            )
        out = self._new_cache(len(keep), T, cache.group[keep], cache.prefix)
        out.k[:, :, :, :written] = cache.k[:, keep, :, :written]
        out.v[:, :, :, :written] = cache.v[:, keep, :, :written]
        out.valid[:, :written] = cache.valid[keep, :written]
        return out

    def _prefill(
        self, prompts: list[list[int]], max_new: int
    ) -> tuple[torch.Tensor, Cache, torch.Tensor, int]:
        """Prompts (grouped rows adjacent) into a fresh cache: (last-token logits, cache, next positions, slot)."""
        B = len(prompts)
        if max(len(p) for p in prompts) + max_new > self.max_positions:
            raise ValueError(f"prompt + max_new_tokens exceeds the model's {self.max_positions} positions")
        groups, group_of, cut = plan_prefixes(prompts) if self.share_prefix else ([[]], [0] * B, [0] * B)
        prefix = None
        if max(len(g) for g in groups) > 0:
            rows = [group_of.count(g) for g in range(len(groups))]
            groups, cut = self._reuse_prefixes(groups, group_of, rows)
            prefix = self._prefix(groups, rows)
        rests = [p[c:] for p, c in zip(prompts, cut, strict=True)]
        S = max(len(r) for r in rests)
        # The torch decode step attends to every slot: its cache starts small and grows (`grow`). The native one
        # attends to the written slots only, so its cache holds every slot from the start (untouched memory is
        # never paged in) and finished rows leave by the row map alone.
        T = S + (max_new if self.kernels is not None else min(max_new, self.grow))
        cache = self._new_cache(B, T, torch.tensor(group_of), prefix)
        ids = torch.full((B, S), self.pad_id, dtype=torch.long)
        pos = torch.zeros((B, S), dtype=torch.long)
        for b, (r, c) in enumerate(zip(rests, cut, strict=True)):
            ids[b, S - len(r) :] = torch.tensor(r)
            pos[b, S - len(r) :] = torch.arange(c, c + len(r))
            cache.valid[b, S - len(r) : S] = True  # later slots become valid as they are written
        if self.kernels is not None:  # attention skips the blocks of each row's left padding
            cache.own_start = torch.tensor([S - len(r) for r in rests], dtype=torch.int32)
        h = self._forward(ids, pos, cache, 0)
        return self._logits(h), cache, torch.tensor([len(p) for p in prompts]), S

    def _reuse_prefixes(
        self, groups: list[list[int]], group_of: list[int], rows: list[int]
    ) -> tuple[list[list[int]], list[int]]:
        """Swap each group prefix for a stored one it starts with, where that computes fewer tokens.

        A stored prefix K that the group's prefix P begins with leaves P's remaining len(P) - len(K) tokens to
        each of the group's rows (`rows[g]` of them); it is taken when that costs less than computing P once.
        Returns the groups' prefixes and each prompt's prefix length.
        """
        out = list(groups)
        for g, p in enumerate(groups):
            best = max(
                (k for k in self._prefixes if len(k) <= len(p) and tuple(p[: len(k)]) == k),
                key=len,
                default=None,
            )
            if best is not None and (len(p) - len(best)) * rows[g] < len(p):
                out[g] = list(best)
        return out, [len(out[g]) for g in group_of]

    def _slots(self, t: torch.Tensor, keys: bool, a: int, b: int) -> torch.Tensor:
        """Slots [a, b) of a key (`keys`) or value cache tensor in this engine's layout (a, b multiples of 16)."""
        if self.kernels is None:
            return t[..., a:b, :]
        # native layouts (spiral.native.Kernels.cache_shapes): bf16 keys (.., T/16, D/2, 16, 2), values
        # (.., T/2, D, 2)
        if self.dtype == torch.bfloat16:
            return t[..., a // 16 : b // 16, :, :, :] if keys else t[..., a // 2 : b // 2, :, :]
        return t[..., a:b] if keys else t[..., a:b, :]

    def _prefix(self, groups: list[list[int]], rows: list[int]) -> Prefix:
        """The groups' prefixes, left-padded to a common length (a multiple of 16): stored ones copied in, the others
        computed in one forward (and stored when two or more rows share them)."""
        pad16 = lambda n: -(-n // 16) * 16  # noqa: E731
        todo = [g for g, p in enumerate(groups) if p and tuple(p) not in self._prefixes]
        fresh = {}
        if todo:
            Cm = pad16(max(len(groups[g]) for g in todo))
            pre = self._new_cache(len(todo), Cm, torch.arange(len(todo)))
            ids = torch.full((len(todo), Cm), self.pad_id, dtype=torch.long)
            pos = torch.zeros((len(todo), Cm), dtype=torch.long)
            for i, g in enumerate(todo):
                p = groups[g]
                ids[i, Cm - len(p) :] = torch.tensor(p)
                pos[i, Cm - len(p) :] = torch.arange(len(p))
                pre.valid[i, Cm - len(p) :] = True
            self._forward(ids, pos, pre, 0)
            for i, g in enumerate(todo):
                Cg = pad16(len(groups[g]))
                k = self._slots(pre.k[:, i : i + 1], True, Cm - Cg, Cm).clone()
                v = self._slots(pre.v[:, i : i + 1], False, Cm - Cg, Cm).clone()
                fresh[tuple(groups[g])] = (k, v)
                if rows[g] >= 2:
                    self._store_prefix(tuple(groups[g]), k, v)
            self.timing["prefix_tokens_computed"] += sum(len(groups[g]) for g in todo)
        C = pad16(max(len(p) for p in groups))
        Gr = len(groups)
        out = self._new_cache(Gr, C, torch.arange(Gr))
        for g, p in enumerate(groups):
            if not p:
                continue
            key = tuple(p)
            k, v = fresh[key] if key in fresh else self._prefixes[key]
            if key not in fresh:
                self._prefixes.move_to_end(key)
                self.timing["prefix_tokens_reused"] += len(p)
            Cg = pad16(len(p))
            self._slots(out.k[:, g : g + 1], True, C - Cg, C).copy_(k)
            self._slots(out.v[:, g : g + 1], False, C - Cg, C).copy_(v)
            out.valid[g, C - len(p) :] = True
        bias = torch.zeros((Gr, C)).masked_fill_(~out.valid, float("-inf")).to(self.dtype)
        start = torch.tensor([C - len(p) for p in groups], dtype=torch.int32)
        return Prefix(out.k, out.v, bias, start)

    def clear_prefix_cache(self) -> None:
        """Forget the stored prefix K/V (load_weights does this; benchmarks start each measurement cold)."""
        self._prefixes.clear()

    def _store_prefix(self, key: tuple[int, ...], k: torch.Tensor, v: torch.Tensor) -> None:
        """Keep a computed prefix for later calls (least recently used ones leave past `prefix_cache_mb`)."""
        self._prefixes[key] = (k, v)
        limit = self.prefix_cache_mb * 2**20
        while self._prefixes and sum(a.nbytes + b.nbytes for a, b in self._prefixes.values()) > limit:
            self._prefixes.popitem(last=False)

    # ----- generation -----

    def generate(self, prompts: list[list[int]], sampling: Sampling) -> Generation:
        """Sample one response per prompt; batches of at most `batch_size` (similar prompts together)."""
        key = (lambda i: prompts[i]) if self.share_prefix else (lambda i: -len(prompts[i]))
        order = sorted(range(len(prompts)), key=key)
        tokens: list[list[int]] = [[] for _ in prompts]
        logprobs: list[list[float]] = [[] for _ in prompts]
        truncated = [False] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            out = self._generate_batch([prompts[i] for i in chunk], sampling)
            for i, (t, lp, tr) in zip(chunk, zip(*out, strict=True), strict=True):
                tokens[i], logprobs[i], truncated[i] = t, lp, tr
        return Generation(tokens, logprobs, truncated)

    @torch.inference_mode()
    def _generate_batch(self, prompts: list[list[int]], sampling: Sampling):
        """One batch: prefill, then one token per step; finished rows are compacted out in bulk."""
        B, max_new = len(prompts), sampling.max_new_tokens
        t0, c0 = time.perf_counter(), time.process_time()
        order = sorted(range(B), key=lambda i: prompts[i])  # rows of one prefix group adjacent
        logits, cache, next_pos, slot = self._prefill([prompts[i] for i in order], max_new)
        t1, c1 = time.perf_counter(), time.process_time()
        self.timing["prefill_s"] += t1 - t0
        self.timing["prefill_cpu_s"] += c1 - c0
        rows = torch.tensor(order)  # original row of each cache row
        alive = torch.ones(B, dtype=torch.bool)  # cache rows still generating
        toks: list[list[int]] = [[] for _ in range(B)]
        lps: list[list[float]] = [[] for _ in range(B)]
        truncated = [True] * B
        for t in range(max_new):
            new, lp = sample_cdf(logits, sampling.temperature, sampling.top_p, self.rng, self.kernels)
            live = alive.nonzero().squeeze(-1)
            for r, tok, logp in zip(rows[live].tolist(), new[live].tolist(), lp[live].tolist(), strict=True):
                toks[r].append(tok)
                lps[r].append(logp)
            stop = torch.isin(new, self.eos_ids) & alive
            if self.stop_rule is not None:
                stop_on_rule(self.stop_rule, new, stop, alive, rows, toks)
            for r in rows[stop].tolist():
                truncated[r] = False
            alive &= ~stop
            n_alive = int(alive.sum())
            if t == max_new - 1 or n_alive == 0:
                break
            # compaction is free under the native kernels (row map), so finished rows leave at once
            threshold = 1 if self.kernels is not None else max(1, self.compact_fraction * len(rows))
            compact = len(rows) - n_alive >= threshold
            full = slot == cache.valid.shape[1]
            if compact or full:  # drop finished rows and/or add `grow` slots
                keep = alive.nonzero().squeeze(-1) if compact else torch.arange(len(rows))
                T = cache.valid.shape[1] + (self.grow if full else 0)
                cache = self._resize(cache, keep, min(T, slot + max_new - t), slot)
                rows, new, next_pos, alive = rows[keep], new[keep], next_pos[keep], alive[keep]
            cache.valid[:, slot] = True
            h = self._forward(new[:, None], next_pos[:, None], cache, slot)
            logits = self._logits(h)
            next_pos, slot = next_pos + 1, slot + 1
            self.timing["decode_steps"] += 1
            self.timing["decode_row_steps"] += len(rows)
        self.timing["decode_s"] += time.perf_counter() - t1
        self.timing["decode_cpu_s"] += time.process_time() - c1
        return toks, lps, truncated


GENERATORS = ("fast", "hf", "vllm")


def make_generator(
    kind: str,
    policy: nn.Module,
    eos_ids: list[int],
    pad_id: int,
    dtype: torch.dtype = torch.float32,
    batch_size: int = 32,
    seed: int = 0,
    share_prefix: bool = True,
):
    """The sampler named `kind`: fast (this module; Llama only, else falls back to hf), hf or vllm (GPU).

    All three share one interface: `generate(prompts, sampling)`, `load_weights(policy)`, `get_state()`,
    `set_state()`. vllm is imported only when asked for, so CPU code paths never load it.
    """
    if kind not in GENERATORS:
        from runkit.errors import UserError

        raise UserError(f"unknown generator {kind!r}; choose one of {', '.join(GENERATORS)}")
    if kind == "vllm":
        from spiral.vllm_engine import VLLMGenerator

        return VLLMGenerator(policy, eos_ids, pad_id, dtype, batch_size, seed, share_prefix)
    if kind == "fast":
        try:
            return FastGenerator(policy, eos_ids, pad_id, dtype, batch_size, seed, share_prefix)
        except ValueError:  # not a bias-free Llama: the transformers forward serves every architecture
            pass
    from spiral.rollout import Generator

    return Generator(policy, eos_ids, pad_id, dtype, batch_size, seed, share_prefix)

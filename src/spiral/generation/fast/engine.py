"""`FastGenerator`: the decode loop of the fast engine, behind the interface of `spiral.generation.base.Generator`.

It runs its own forward pass over the policy's (LoRA-merged) weights instead of the Hugging Face module, with no
per-step framework overhead. Its parts:
- `weights.Weights`: fused QKV and gate/up projections, bf16 weights packed once per weight update;
- `forward.LlamaForward`: the forward step, on the native kernels (`spiral.generation.native`, `native=False`
  or SPIRAL_NATIVE=0 for the torch path) or torch ops;
- `cache.KVCaches`: static KV caches and shared prompt prefixes computed once per group and stored across calls
  until the weights change;
- this loop: finished rows compacted out of the batch (at once under the native kernels, through a row map into
  the cache; else in bulk once an eighth of the rows has finished, the cache copied), tokens drawn from the same
  distribution as `sample_tokens` by inverse CDF (`sample_cdf`), with the behaviour log-probs the learner
  recomputes.
`load_weights(policy)` re-packs the weights (a copy of ~0.5 GB for SmolLM2 in fp32, 0.1-0.3 s) and drops the
stored prefixes.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from spiral.generation import native as native_mod
from spiral.generation.base import (
    Generation,
    Sampling,
    SeededSampler,
    generate_in_batches,
    sample_cdf,
    stop_on_rule,
)
from spiral.generation.fast.cache import KVCaches
from spiral.generation.fast.forward import LlamaForward
from spiral.generation.fast.weights import Weights, llama_config


class FastGenerator(SeededSampler):
    """Batched sampling with a hand-written Llama forward, static KV cache and shared-prefix prefill.

    `generate(prompts, sampling)`, `load_weights(policy)`, `get_state()` / `set_state()`. Holds its own copy of
    the weights in `dtype`.
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
        base, cfg = llama_config(policy)
        # Fused native decode kernels: None = use them when they build here.
        kernels = None
        if native is not False and dtype in (torch.float32, torch.bfloat16):
            kernels = native_mod.load()
            if kernels is not None and not kernels.supports(*_attention_shape(cfg)):
                kernels = None
            if native and kernels is None:
                raise RuntimeError(
                    f"native decode kernels unavailable: {native_mod.error or 'unsupported shape'}"
                )
        self.weights = Weights(dtype, kernels, prepack, native_gemm)
        self.forward = LlamaForward(base, cfg, self.weights, kernels)
        self.dtype, self.batch_size, self.share_prefix = dtype, batch_size, share_prefix
        self.compact_fraction = compact_fraction  # compact the batch once this share of its rows has finished
        self.eos_ids = torch.tensor(sorted(set(eos_ids)))
        self.stop_rule = None  # optional prompting.BoxStop: end a row once its response holds a box
        self.rng = torch.Generator().manual_seed(seed)
        # wall and process-CPU seconds of prefill and decode, decode steps and row-steps (for benchmarks)
        self.timing = dict.fromkeys(("prefill_s", "prefill_cpu_s", "decode_s", "decode_cpu_s"), 0.0)
        self.timing.update(
            decode_steps=0, decode_row_steps=0, prefix_tokens_computed=0, prefix_tokens_reused=0
        )
        # Torch path: the own cache starts with room for `grow` new tokens and grows by `grow` slots when full: a
        # decode step attends to all its slots, so a cache sized for max_new_tokens up front would read mostly
        # empty slots. (The native kernels attend to written slots only; their cache is sized up front.)
        self.caches = KVCaches(self.forward, pad_id, share_prefix, grow, prefix_cache_mb, self.timing)
        self.load_weights(policy)

    @property
    def kernels(self):
        """The native kernels in use (None: torch ops); settable, for comparing builds."""
        return self.forward.kernels

    @kernels.setter
    def kernels(self, kernels) -> None:
        self.forward.kernels = self.weights.kernels = kernels  # the next load_weights packs for them too

    @property
    def layers(self):
        return self.weights.layers

    @property
    def prepack(self) -> bool:
        return self.weights.prepack

    @property
    def native_gemm(self) -> bool:
        return self.weights.native_gemm

    def load_weights(self, policy: nn.Module) -> None:
        """Pack the policy's current (LoRA-merged) weights; stored prefix K/V belong to the previous ones."""
        self.caches.clear()
        self.weights.load(policy)

    def clear_prefix_cache(self) -> None:
        """Forget the stored prefix K/V (load_weights does this; benchmarks start each measurement cold)."""
        self.caches.clear()

    def generate(self, prompts: list[list[int]], sampling: Sampling) -> Generation:
        """Sample one response per prompt; batches of at most `batch_size` (similar prompts together)."""
        return generate_in_batches(
            prompts, self.batch_size, self.share_prefix, lambda batch: self._generate_batch(batch, sampling)
        )

    @torch.inference_mode()
    def _generate_batch(self, prompts: list[list[int]], sampling: Sampling):
        """One batch: prefill, then one token per step; finished rows are compacted out in bulk."""
        B, max_new = len(prompts), sampling.max_new_tokens
        t0, c0 = time.perf_counter(), time.process_time()
        order = sorted(range(B), key=lambda i: prompts[i])  # rows of one prefix group adjacent
        logits, cache, next_pos, slot = self.caches.prefill([prompts[i] for i in order], max_new)
        t1, c1 = time.perf_counter(), time.process_time()
        self.timing["prefill_s"] += t1 - t0
        self.timing["prefill_cpu_s"] += c1 - c0
        rows = torch.tensor(order)  # original row of each cache row
        alive = torch.ones(B, dtype=torch.bool)  # cache rows still generating
        toks: list[list[int]] = [[] for _ in range(B)]
        lps: list[list[float]] = [[] for _ in range(B)]
        truncated = [True] * B
        grow = self.caches.grow
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
                T = cache.valid.shape[1] + (grow if full else 0)
                cache = self.caches.resize(cache, keep, min(T, slot + max_new - t), slot)
                rows, new, next_pos, alive = rows[keep], new[keep], next_pos[keep], alive[keep]
            cache.valid[:, slot] = True
            h = self.forward(new[:, None], next_pos[:, None], cache, slot)
            logits = self.forward.logits(h)
            next_pos, slot = next_pos + 1, slot + 1
            self.timing["decode_steps"] += 1
            self.timing["decode_row_steps"] += len(rows)
        self.timing["decode_s"] += time.perf_counter() - t1
        self.timing["decode_cpu_s"] += time.process_time() - c1
        return toks, lps, truncated


def _attention_shape(cfg) -> tuple[int, int, int]:
    heads = cfg.num_attention_heads
    return heads, cfg.num_key_value_heads, getattr(cfg, "head_dim", None) or cfg.hidden_size // heads

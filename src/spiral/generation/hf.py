"""The transformers sampler: batched generation through the Hugging Face forward, for any architecture."""

from __future__ import annotations

import torch
from torch import nn

from spiral.generation.base import (
    Generation,
    Sampling,
    SeededSampler,
    generate_in_batches,
    sample_tokens,
    stop_on_rule,
)
from spiral.generation.prefix import forward_shared_prefixes
from spiral.model import merged_state_dict, plain_copy


class HFGenerator(SeededSampler):
    """Batched sampling with left padding and a KV cache; finished rows leave the batch.

    Holds its own copy of the weights in `dtype` (bf16 by default); `load_weights(policy)` copies the
    learner's current (LoRA-merged) weights in. With fp32 and a plain model it shares the policy's module.
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
    ) -> None:
        self.dtype, self.batch_size, self.pad_id, self.share_prefix = dtype, batch_size, pad_id, share_prefix
        self.eos_ids = torch.tensor(sorted(set(eos_ids)))
        self.stop_rule = None  # optional prompting.BoxStop: end a row once its response holds a box
        self.shared = dtype == torch.float32 and not hasattr(policy, "peft_config")
        self.model = policy if self.shared else plain_copy(policy, dtype)
        self.rng = torch.Generator().manual_seed(seed)

    def load_weights(self, policy: nn.Module) -> None:
        """Copy the policy's current weights into the generation model (no-op when shared)."""
        if self.shared:
            return
        with torch.no_grad():
            self.model.load_state_dict(merged_state_dict(policy), strict=False)

    def generate(self, prompts: list[list[int]], sampling: Sampling) -> Generation:
        """Sample one response per prompt; batches of at most `batch_size` (similar prompts together)."""
        was_training = self.model.training
        self.model.eval()
        try:
            return generate_in_batches(
                prompts,
                self.batch_size,
                self.share_prefix,
                lambda batch: self._generate_batch(batch, sampling),
            )
        finally:
            self.model.train(was_training)

    @torch.inference_mode()
    def _generate_batch(self, prompts: list[list[int]], sampling: Sampling):
        """One batch (left-padded, or with shared prefixes computed once); finished rows leave the cache."""
        from transformers import DynamicCache

        B, P = len(prompts), max(len(p) for p in prompts)
        dev = next(self.model.parameters()).device  # the draws stay on the CPU with the generator's RNG
        if self.share_prefix:
            out, mask, cache = forward_shared_prefixes(self.model, prompts)
        else:
            ids = torch.full((B, P), self.pad_id, dtype=torch.long)
            mask = torch.zeros((B, P), dtype=torch.long)
            for b, p in enumerate(prompts):
                ids[b, P - len(p) :] = torch.tensor(p, dtype=torch.long)
                mask[b, P - len(p) :] = 1
            ids, mask = ids.to(dev), mask.to(dev)
            cache = DynamicCache(config=self.model.config)
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                             cache=cache, use_cache=True, logits_to_keep=1)  # fmt: skip
        next_pos = torch.tensor(
            [len(p) for p in prompts], device=dev
        )  # (B,) position of the first response token
        rows = torch.arange(B)  # which original rows are still generating
        toks: list[list[int]] = [[] for _ in range(B)]
        lps: list[list[float]] = [[] for _ in range(B)]
        truncated = [True] * B
        for t in range(sampling.max_new_tokens):
            new, lp = sample_tokens(
                out.logits[:, -1, :].cpu(), sampling.temperature, sampling.top_p, self.rng
            )
            for r, tok, logp in zip(rows.tolist(), new.tolist(), lp.tolist(), strict=True):
                toks[r].append(tok)
                lps[r].append(logp)
            stop = torch.isin(new, self.eos_ids)
            if self.stop_rule is not None:
                stop_on_rule(self.stop_rule, new, stop, torch.ones_like(stop), rows, toks)
            for r in rows[stop].tolist():
                truncated[r] = False
            if t == sampling.max_new_tokens - 1 or bool(stop.all()):
                break
            if bool(stop.any()):
                keep = (~stop).nonzero().squeeze(-1)
                on_dev = keep.to(dev)
                cache.batch_select_indices(on_dev)
                rows, new, mask, next_pos = rows[keep], new[keep], mask[on_dev], next_pos[on_dev]
            mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=torch.long, device=dev)], dim=-1)
            out = self.model(
                input_ids=new[:, None].to(dev), attention_mask=mask, position_ids=next_pos[:, None],
                cache=cache, use_cache=True,
            )  # fmt: skip
            next_pos = next_pos + 1
        return toks, lps, truncated

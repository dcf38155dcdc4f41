"""Generation: samplers that turn token prompts into responses with behaviour log-probs.

- `base`: the `Generator` interface, `Sampling`, `Generation` and the samplers (`sample_tokens`, `sample_cdf`);
- `hf`: `HFGenerator`, the transformers forward (any architecture);
- `fast`: `FastGenerator`, its own Llama forward with static KV caches and native kernels (`native/`);
- `vllm`: `VLLMGenerator` (GPU; imported only when asked for);
- `prefix`: shared prompt prefixes planned and computed once;
- `actions`: constrained action decoding (score each legal move's answer, renormalise).
"""

from __future__ import annotations

import torch
from torch import nn

from spiral.generation.base import Generation, Generator, Sampling

GENERATORS = ("fast", "hf", "vllm")

__all__ = ["GENERATORS", "Generation", "Generator", "Sampling", "make_generator"]


def make_generator(
    kind: str,
    policy: nn.Module,
    eos_ids: list[int],
    pad_id: int,
    dtype: torch.dtype = torch.float32,
    batch_size: int = 32,
    seed: int = 0,
    share_prefix: bool = True,
) -> Generator:
    """The sampler named `kind`: fast (a Llama on the CPU, else falls back to hf), hf or vllm (GPU).

    All three share one interface: `generate(prompts, sampling)`, `load_weights(policy)`, `get_state()`,
    `set_state()`. vllm is imported only when asked for, so CPU code paths never load it.
    """
    if kind not in GENERATORS:
        from runkit.errors import UserError

        raise UserError(f"unknown generator {kind!r}; choose one of {', '.join(GENERATORS)}")
    if kind == "vllm":
        from spiral.generation.vllm import VLLMGenerator

        return VLLMGenerator(policy, eos_ids, pad_id, dtype, batch_size, seed, share_prefix)
    if kind == "fast" and next(policy.parameters()).device.type != "cpu":
        kind = "hf"  # the fast sampler's kernels are CPU ones; on a GPU the transformers forward (or vllm)
    if kind == "fast":
        from spiral.generation.fast import FastGenerator

        try:
            return FastGenerator(policy, eos_ids, pad_id, dtype, batch_size, seed, share_prefix)
        except ValueError:  # not a bias-free Llama: the transformers forward serves every architecture
            pass
    from spiral.generation.hf import HFGenerator

    return HFGenerator(policy, eos_ids, pad_id, dtype, batch_size, seed, share_prefix)

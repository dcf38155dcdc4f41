"""What every generator shares: the sampling settings, the result record, the samplers and the interface.

A generator turns token-id prompts into sampled responses with the behaviour log-probs the learner recomputes.
Three implement `Generator` here: `spiral.generation.hf.HFGenerator` (the transformers forward, any
architecture), `spiral.generation.fast.FastGenerator` (its own Llama forward with native kernels) and
`spiral.generation.vllm.VLLMGenerator` (GPU). `spiral.generation.make_generator` picks one by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn


@dataclass(frozen=True)
class Sampling:
    """How to sample: temperature 0 means greedy (its log-probs are those of temperature 1)."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256


@dataclass
class Generation:
    """Responses of one generate call, in prompt order."""

    tokens: list[list[int]]  # sampled ids; the stop token is included when the model emitted one
    logprobs: list[list[float]]  # behaviour log-prob of each sampled id
    truncated: list[bool]  # True when max_new_tokens was reached before a stop token


def sample_tokens(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one id per row of `logits` (B, V); return ids and their log-probs under softmax(logits / T).

    With top_p < 1 the draw is restricted to the smallest set of ids holding top_p of the mass, but the
    returned log-prob is that of the untruncated temperature distribution: the function of the weights the
    learner recomputes, so that the PPO ratio compares like with like (the presets train with top_p = 1).
    """
    logits = logits.float()
    if temperature == 0:
        ids = logits.argmax(dim=-1)
        return ids, torch.log_softmax(logits, dim=-1).gather(-1, ids[:, None]).squeeze(-1)
    logp = torch.log_softmax(logits / temperature, dim=-1)  # (B, V)
    probs = logp.exp()
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        outside = sorted_p.cumsum(-1) - sorted_p >= top_p  # mass before this id already covers top_p
        sorted_p = sorted_p.masked_fill(outside, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    ids = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    return ids, logp.gather(-1, ids[:, None]).squeeze(-1)


def stop_on_rule(rule, new: torch.Tensor, stop: torch.Tensor, alive: torch.Tensor, rows: torch.Tensor,
                 toks: list[list[int]]) -> None:  # fmt: skip
    """Mark in `stop` the live rows whose new token completes what `rule` stops on (e.g. a closed box).

    `toks[rows[i]]` already ends with `new[i]`; the rule is asked only when `new[i]` is one of its triggers.
    """
    hit = (torch.isin(new, rule.trigger_ids) & alive & ~stop).nonzero().squeeze(-1)
    for i in hit.tolist():
        if rule.closes(toks[int(rows[i])]):
            stop[i] = True


class Generator(Protocol):
    """The interface the collector, the agents and the trainer use (weights are copied in after each update)."""

    def generate(self, prompts: list[list[int]], sampling: Sampling) -> Generation: ...

    def load_weights(self, policy: nn.Module) -> None: ...

    def get_state(self) -> torch.Tensor: ...

    def set_state(self, state: torch.Tensor) -> None: ...


class SeededSampler:
    """The sampling RNG `self.rng` (a torch.Generator) as the state a checkpoint carries."""

    rng: torch.Generator

    def get_state(self) -> torch.Tensor:
        """The sampling RNG state (for checkpoints)."""
        return self.rng.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        """Restore the sampling RNG state."""
        self.rng.set_state(state)


def generate_in_batches(
    prompts: list[list[int]], batch_size: int, share_prefix: bool, run_batch
) -> Generation:
    """One response per prompt through `run_batch(prompts) -> (tokens, logprobs, truncated)` on batches of at
    most `batch_size`: prompts sorted so that similar ones (shared prefixes) or, without sharing, similar
    lengths go together; results back in prompt order."""
    key = (lambda i: prompts[i]) if share_prefix else (lambda i: -len(prompts[i]))
    order = sorted(range(len(prompts)), key=key)
    tokens: list[list[int]] = [[] for _ in prompts]
    logprobs: list[list[float]] = [[] for _ in prompts]
    truncated = [False] * len(prompts)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        out = run_batch([prompts[i] for i in chunk])
        for i, (t, lp, tr) in zip(chunk, zip(*out, strict=True), strict=True):
            tokens[i], logprobs[i], truncated[i] = t, lp, tr
    return Generation(tokens, logprobs, truncated)


def sample_cdf(
    logits: torch.Tensor,
    temperature: float,
    top_p: float,
    generator: torch.Generator | None,
    kernels=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same distribution and log-probs as `sample_tokens`, drawn by inverse CDF (one uniform per row).

    `torch.multinomial` draws one exponential per vocabulary entry (~100 ms a step at 64 rows x 49k ids on
    this CPU); a float64 cumulative sum and a binary search cost a few ms, the native kernel (`kernels`,
    spiral.generation.native) about 1 ms with the same uniforms. Greedy and top_p < 1 defer to `sample_tokens` (top_p
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

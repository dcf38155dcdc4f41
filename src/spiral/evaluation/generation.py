"""The TextGenerator of reasoning evaluation over the policy's batched sampler (spiral.generation.make_generator).

Prompts are rendered with the tokenizer's chat template; the sampler left-pads, keeps a KV cache, sorts by
length and drops finished rows from the batch, so short answers do not wait for long ones.
"""

from __future__ import annotations

from typing import Any

from spiral.prompting import plain_render


class PolicyTextGenerator:
    """`generate(prompts, n, ...)` -> n completions per prompt; `count_tokens` counts response tokens."""

    def __init__(
        self, model: Any, tokenizer: Any, batch_size: int = 32, dtype: str = "fp32", generator: str = "fast"
    ) -> None:
        import torch

        from spiral.agents.lm import stop_ids
        from spiral.generation import make_generator

        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.tokenizer = tokenizer
        self.has_chat = bool(getattr(tokenizer, "chat_template", None))
        torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
        self.sampler = make_generator(
            generator, model, stop_ids(model, tokenizer), tokenizer.pad_token_id, torch_dtype, batch_size
        )
        self.stop = set(stop_ids(model, tokenizer))
        self.last_token_counts: list[
            list[int]
        ] = []  # per prompt of the last call: generated tokens per sample

    def render(self, messages: list[dict[str, str]]) -> str:
        """The chat template's prompt text, or a plain Question/Answer layout without one."""
        if self.has_chat:
            return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return plain_render(messages)

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Token counts of response texts."""
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def generate(
        self, prompts: list[str], n: int, temperature: float, top_p: float, max_new_tokens: int, seed: int
    ) -> list[list[str]]:
        """Sample `n` completions for each prompt (greedy when temperature is 0)."""
        from spiral.generation.base import Sampling

        ids = self.tokenizer(prompts, add_special_tokens=not self.has_chat)["input_ids"]
        flat = [list(p) for p in ids for _ in range(n)]
        self.sampler.rng.manual_seed(seed)
        gen = self.sampler.generate(flat, Sampling(temperature, top_p, max_new_tokens))
        texts = self.tokenizer.batch_decode(
            [[t for t in toks if t not in self.stop] for toks in gen.tokens], skip_special_tokens=True
        )
        counts = [sum(t not in self.stop for t in toks) for toks in gen.tokens]
        self.last_token_counts = [counts[i * n : (i + 1) * n] for i in range(len(prompts))]
        return [texts[i * n : (i + 1) * n] for i in range(len(prompts))]


def load_generator(
    spec: str, dtype: str = "auto", batch_size: int = 32, threads: int | None = None, generator: str = "fast"
):
    """A generator for a model spec of spiral.model (smollm2-135m-instruct, tiny, a folder, a run)."""
    import torch

    from spiral.model import load_model, load_tokenizer

    if threads:
        torch.set_num_threads(threads)
    tok = load_tokenizer(spec)
    model = load_model(spec, tok)
    if dtype == "auto":  # bf16 matmuls are slower than fp32 on most CPUs
        dtype = "bf16" if torch.cuda.is_available() else "fp32"
    return PolicyTextGenerator(model, tok, batch_size=batch_size, dtype=dtype, generator=generator)

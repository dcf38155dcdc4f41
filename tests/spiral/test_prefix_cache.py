"""FastGenerator's store of shared-prefix K/V across generate calls: reused, exact, and dropped with old weights."""

from __future__ import annotations

import pytest
import torch
from test_engine import EOS, PAD, hf_greedy, sharp_llama

from spiral.generation.base import Sampling
from spiral.generation.fast import FastGenerator

GREEDY = Sampling(temperature=0.0, max_new_tokens=12)


def rand(n: int, seed: int) -> list[int]:
    return torch.randint(2, 97, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def batch(base: list[int], seed: int, n: int = 4) -> list[list[int]]:
    """n prompts sharing `base` (one prefix group), each with its own tail, plus an unrelated prompt."""
    return [base + rand(3 + i, seed + i) for i in range(n)] + [rand(11, seed + 99)]


@pytest.mark.parametrize("native", [None, False])
def test_a_later_call_reuses_the_prefix_and_gives_the_same_tokens(native):
    model = sharp_llama()
    base = rand(45, 0)
    fast = FastGenerator(model, [EOS], PAD, torch.float32, batch_size=8, native=native)
    first = batch(base, 1)
    fast.generate(first, GREEDY)
    assert fast.timing["prefix_tokens_reused"] == 0
    computed = fast.timing["prefix_tokens_computed"]
    assert computed >= len(base)
    second = batch(base, 50)  # new tails, the same shared part
    out = fast.generate(second, GREEDY)
    assert fast.timing["prefix_tokens_reused"] >= len(base)
    # only the unrelated prompt (a group of its own, 10 tokens) is computed again, not the shared 45
    assert fast.timing["prefix_tokens_computed"] - computed == 10
    assert out.tokens == [hf_greedy(model, p, 12, EOS) for p in second]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_reused_prefix_logprobs_equal_a_fresh_engine(dtype):
    """Sampled tokens and log-probs with a stored prefix equal a fresh engine's (bf16: the paired value layout)."""
    model = sharp_llama(init=0.1)
    base = rand(45, 0)
    warm = FastGenerator(model, [EOS], PAD, dtype, batch_size=8, seed=5)
    warm.generate(batch(base, 1), GREEDY)
    fresh = FastGenerator(model, [EOS], PAD, dtype, batch_size=8, seed=5)
    prompts = batch(base, 50)
    s = Sampling(1.0, 1.0, max_new_tokens=10)
    a, b = warm.generate(prompts, s), fresh.generate(prompts, s)
    assert warm.timing["prefix_tokens_reused"] > 0 and fresh.timing["prefix_tokens_reused"] == 0
    assert a.tokens == b.tokens
    for x, y in zip(a.logprobs, b.logprobs, strict=True):
        torch.testing.assert_close(torch.tensor(x), torch.tensor(y), atol=1e-5, rtol=1e-5)


def test_a_longer_shared_part_builds_on_a_stored_prefix():
    """Prompts whose common part extends a stored prefix by a few tokens use it (the rest joins each row)."""
    model = sharp_llama()
    base = rand(45, 0)
    fast = FastGenerator(model, [EOS], PAD, torch.float32, batch_size=8)
    fast.generate(batch(base, 1), GREEDY)
    computed = fast.timing["prefix_tokens_computed"]
    longer = [
        base + [7, 8] + t for t in (rand(3, 60), rand(5, 61), rand(4, 62))
    ]  # shared part: base + [7, 8]
    out = fast.generate(longer, GREEDY)
    assert fast.timing["prefix_tokens_computed"] == computed  # no unrelated prompt this time
    assert fast.timing["prefix_tokens_reused"] >= len(base)
    assert out.tokens == [hf_greedy(model, p, 12, EOS) for p in longer]


@pytest.mark.parametrize("native", [None, False])
def test_new_weights_drop_the_stored_prefixes(native):
    model = sharp_llama()
    base = rand(45, 0)
    prompts = batch(base, 1)
    fast = FastGenerator(model, [EOS], PAD, torch.float32, batch_size=8, native=native)
    fast.generate(prompts, GREEDY)
    with torch.no_grad():  # a learner step that changes every layer
        for p in model.parameters():
            p.mul_(1.3)
    fast.load_weights(model)
    out = fast.generate(prompts, GREEDY)
    assert fast.timing["prefix_tokens_reused"] == 0
    assert out.tokens == [hf_greedy(model, p, 12, EOS) for p in prompts]


def test_the_store_keeps_to_its_size_limit():
    model = sharp_llama()
    fast = FastGenerator(model, [EOS], PAD, torch.float32, batch_size=8, prefix_cache_mb=0.06)
    for seed in range(4):  # four different shared prefixes of 45 tokens (each 24 KB of K/V here: two fit)
        fast.generate(batch(rand(45, 100 + seed), seed), GREEDY)
    stored = sum(k.nbytes + v.nbytes for k, v in fast.caches.stored.values())
    assert 0 < stored <= 0.06 * 2**20
    assert len(fast.caches.stored) == 2
    off = FastGenerator(model, [EOS], PAD, torch.float32, batch_size=8, prefix_cache_mb=0)
    off.generate(batch(rand(45, 100), 0), GREEDY)
    assert not off.caches.stored

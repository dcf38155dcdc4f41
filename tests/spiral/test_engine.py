"""FastGenerator against plain Hugging Face: greedy token for token, log-probs against a fresh forward pass."""

from __future__ import annotations

import pytest
import torch

from spiral.generation.base import Sampling, sample_cdf
from spiral.generation.fast import FastGenerator, can_prepack
from spiral.generation.hf import HFGenerator
from spiral.model import cpu_has_fast_bf16

PAD, EOS = 0, 1


def sharp_llama(init: float = 0.4):
    """A tiny random Llama whose large init makes greedy outputs vary from token to token."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=97, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=True, initializer_range=init, pad_token_id=PAD, eos_token_id=EOS,
                      bos_token_id=None)  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return LlamaForCausalLM(cfg).float().eval()


def make_prompts() -> list[list[int]]:
    """Three prompts sharing a 40-token prefix (one prefix group) and two unrelated ones of other lengths."""
    g = torch.Generator().manual_seed(1)

    def rand(n: int) -> list[int]:
        return torch.randint(2, 97, (n,), generator=g).tolist()

    base = rand(40)
    return [base + rand(3), base + rand(9), base + rand(1), rand(13), rand(2)]


def hf_greedy(model, prompt: list[int], max_new: int, eos: int) -> list[int]:
    out = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                         do_sample=False, max_new_tokens=max_new, eos_token_id=eos, pad_token_id=PAD)  # fmt: skip
    return out[0, len(prompt) :].tolist()


def forward_logprobs(model, prompt: list[int], response: list[int], temperature: float) -> torch.Tensor:
    with torch.no_grad():
        logits = model(torch.tensor([prompt + response])).logits[0, len(prompt) - 1 : -1].float()
    logp = torch.log_softmax(logits / temperature, dim=-1)
    return logp.gather(-1, torch.tensor(response)[:, None]).squeeze(-1)


@pytest.mark.parametrize("share_prefix", [True, False])
def test_greedy_equals_hf_generate_token_for_token(share_prefix):
    model = sharp_llama()
    prompts = make_prompts()
    # a stop id that the first prompt's greedy response emits mid-way, so rows leave the batch early
    eos = hf_greedy(model, prompts[0], 30, eos=-1)[6]
    fast = FastGenerator(model, [eos], PAD, torch.float32, batch_size=4, share_prefix=share_prefix)
    out = fast.generate(prompts, Sampling(temperature=0.0, max_new_tokens=30))
    refs = [hf_greedy(model, p, 30, eos) for p in prompts]
    assert out.tokens == refs
    assert len({t for r in refs for t in r}) > 5  # the test model does not just repeat one token
    assert out.truncated == [r[-1] != eos for r in refs]
    assert not out.truncated[0] and len(out.tokens[0]) <= 7


def test_a_cache_that_grows_in_small_steps_gives_the_same_tokens():
    """grow=3 resizes the own cache ten times in 30 steps, interleaved with compactions; outputs must not change."""
    model = sharp_llama()
    prompts = make_prompts()
    eos = hf_greedy(model, prompts[0], 30, eos=-1)[6]
    out = FastGenerator(model, [eos], PAD, torch.float32, batch_size=5, grow=3).generate(
        prompts, Sampling(temperature=0.0, max_new_tokens=30)
    )
    assert out.tokens == [hf_greedy(model, p, 30, eos) for p in prompts]


def test_onednn_prepacked_bf16_weights_change_nothing():
    model = sharp_llama(init=0.1)
    if not (torch.backends.mkldnn.is_available() and cpu_has_fast_bf16()):
        pytest.skip(
            "no oneDNN or no native bf16 on this CPU: prepacking may be unavailable (F.linear is used)"
        )
    assert can_prepack(torch.bfloat16)  # packed results equal F.linear's (the start-up check)
    prompts = make_prompts()
    s = Sampling(1.0, 1.0, max_new_tokens=16)
    # the torch path (native=False) packs for oneDNN; the native kernels' own matmul is tested in test_native
    packed = FastGenerator(model, [EOS], PAD, torch.bfloat16, batch_size=8, seed=4, native=False)
    plain = FastGenerator(
        model, [EOS], PAD, torch.bfloat16, batch_size=8, seed=4, native=False, prepack=False
    )
    assert packed.prepack and not plain.prepack and packed.layers[0].wgu.is_mkldnn
    a, b = packed.generate(prompts, s), plain.generate(prompts, s)
    assert a.tokens == b.tokens and a.logprobs == b.logprobs


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.7, 1.0), (1.0, 0.9), (0.0, 1.0)])
def test_logprobs_match_a_fresh_forward_pass(temperature, top_p):
    model = sharp_llama()
    prompts = make_prompts()
    fast = FastGenerator(model, [EOS], PAD, torch.float32, batch_size=8, seed=3)
    out = fast.generate(prompts, Sampling(temperature, top_p, max_new_tokens=20))
    for p, toks, lps in zip(prompts, out.tokens, out.logprobs, strict=True):
        assert len(toks) == len(lps) > 0
        ref = forward_logprobs(model, p, toks, temperature or 1.0)
        torch.testing.assert_close(torch.tensor(lps), ref, atol=1e-4, rtol=1e-4)


def test_bf16_logprobs_close_to_fp32_forward():
    model = sharp_llama(init=0.1)  # bf16 rounding grows with the logits' scale; keep them moderate
    prompts = make_prompts()
    fast = FastGenerator(model, [EOS], PAD, torch.bfloat16, batch_size=8, seed=0)
    out = fast.generate(prompts, Sampling(1.0, 1.0, max_new_tokens=12))
    diffs = torch.cat([
        (torch.tensor(lps) - forward_logprobs(model, p, toks, 1.0)).abs()
        for p, toks, lps in zip(prompts, out.tokens, out.logprobs, strict=True)
    ])  # fmt: skip
    assert diffs.mean() < 0.05, diffs


def test_agrees_with_rollout_generator_on_greedy():
    model = sharp_llama()
    prompts = make_prompts()
    s = Sampling(temperature=0.0, max_new_tokens=16)
    a = FastGenerator(model, [EOS], PAD, torch.float32, batch_size=3).generate(prompts, s)
    b = HFGenerator(model, [EOS], PAD, torch.float32, batch_size=3).generate(prompts, s)
    assert a.tokens == b.tokens
    for x, y in zip(a.logprobs, b.logprobs, strict=True):
        torch.testing.assert_close(torch.tensor(x), torch.tensor(y), atol=1e-4, rtol=1e-4)


def test_load_weights_follows_the_policy():
    model = sharp_llama()
    prompts = make_prompts()
    s = Sampling(temperature=0.0, max_new_tokens=12)
    fast = FastGenerator(model, [EOS], PAD, torch.float32)
    before = fast.generate(prompts, s).tokens
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    assert fast.generate(prompts, s).tokens == before  # a copy: untouched until synced
    fast.load_weights(model)
    after = fast.generate(prompts, s).tokens
    assert after != before
    assert after == [hf_greedy(model, p, 12, EOS) for p in prompts]


def test_lora_policy_generates_with_merged_weights():
    from spiral.model import add_lora, plain_copy

    policy = add_lora(sharp_llama(), r=4, alpha=8, dropout=0.0, targets=["q_proj", "v_proj", "up_proj"])
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    prompts = make_prompts()
    s = Sampling(temperature=0.0, max_new_tokens=10)
    merged = plain_copy(policy, torch.float32)
    out = FastGenerator(policy, [EOS], PAD, torch.float32).generate(prompts, s)
    assert out.tokens == [hf_greedy(merged, p, 10, EOS) for p in prompts]


def test_rng_state_round_trip():
    fast = FastGenerator(sharp_llama(), [EOS], PAD, torch.float32, seed=5)
    s = Sampling(1.0, 1.0, max_new_tokens=10)
    state = fast.get_state()
    first = fast.generate(make_prompts(), s)
    assert fast.generate(make_prompts(), s).tokens != first.tokens
    fast.set_state(state)
    assert fast.generate(make_prompts(), s).tokens == first.tokens


def test_sample_cdf_draws_from_the_softmax():
    probs = torch.tensor([0.5, 0.0, 0.3, 0.15, 0.05])
    logits = probs.clamp(min=1e-30).log().expand(40_000, -1)
    ids, lp = sample_cdf(logits, 1.0, 1.0, torch.Generator().manual_seed(0))
    freq = torch.bincount(ids, minlength=5).float() / len(ids)
    torch.testing.assert_close(freq, probs, atol=0.01, rtol=0)
    assert (ids != 1).all()
    torch.testing.assert_close(lp, probs.log()[ids])


def test_rejects_a_non_llama_model():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50))
    with pytest.raises(ValueError, match="HFGenerator"):
        FastGenerator(model, [EOS], PAD, torch.float32)


@pytest.mark.slow
def test_smollm2_greedy_equals_hf_generate():
    from spiral.agents.lm import stop_ids
    from spiral.model import PromptFormat, load_model, load_tokenizer

    tok = load_tokenizer("smollm2-135m-instruct")
    model = load_model("smollm2-135m-instruct", tok).eval()
    prompts = PromptFormat(tok).encode(
        ["Your move. Legal moves: [0] [1] [2]", "You hold the King. [check] [bet]"]
    )
    eos = stop_ids(model, tok)
    fast = FastGenerator(model, eos, tok.pad_token_id, torch.float32)
    out = fast.generate(prompts, Sampling(temperature=0.0, max_new_tokens=24))
    for p, toks, lps in zip(prompts, out.tokens, out.logprobs, strict=True):
        ref = model.generate(torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                             do_sample=False, max_new_tokens=24, eos_token_id=eos,
                             pad_token_id=tok.pad_token_id)[0, len(p) :].tolist()  # fmt: skip
        assert toks == ref
        torch.testing.assert_close(
            torch.tensor(lps), forward_logprobs(model, p, toks, 1.0), atol=1e-3, rtol=1e-3
        )


def test_make_generator_picks_fast_for_llama_and_falls_back_for_other_architectures():
    from transformers import GPT2Config, GPT2LMHeadModel

    from runkit.errors import UserError
    from spiral.generation import make_generator

    llama = sharp_llama()
    assert isinstance(make_generator("fast", llama, [EOS], PAD), FastGenerator)
    assert isinstance(make_generator("hf", llama, [EOS], PAD), HFGenerator)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=97, n_embd=32, n_layer=1, n_head=2, n_positions=64)).eval()
    fallback = make_generator("fast", gpt2, [EOS], PAD)
    assert isinstance(fallback, HFGenerator)
    out = fallback.generate([[5, 6, 7]], Sampling(temperature=0.0, max_new_tokens=4))
    assert len(out.tokens[0]) >= 1
    with pytest.raises(UserError, match="unknown generator"):
        make_generator("turbo", llama, [EOS], PAD)


class StopAtToken:
    """A stop rule (the interface of prompting.BoxStop) that fires once a response contains `token`."""

    def __init__(self, token: int) -> None:
        self.token, self.trigger_ids, self.asked = token, torch.arange(97), 0

    def closes(self, tokens: list[int]) -> bool:
        self.asked += 1
        return self.token in tokens


@pytest.mark.parametrize("kind", ["fast", "hf"])
def test_a_stop_rule_ends_each_row_at_its_first_match(kind):
    from spiral.generation import make_generator

    model = sharp_llama()
    prompts = make_prompts()
    refs = [hf_greedy(model, p, 20, eos=-1) for p in prompts]
    token = refs[0][3]
    gen = make_generator(kind, model, [-1], PAD, batch_size=4)
    gen.stop_rule = StopAtToken(token)
    out = gen.generate(prompts, Sampling(temperature=0.0, max_new_tokens=20))
    for ref, toks, lps, trunc in zip(refs, out.tokens, out.logprobs, out.truncated, strict=True):
        cut = ref.index(token) + 1 if token in ref else len(ref)
        assert toks == ref[:cut] and len(lps) == cut
        assert trunc == (token not in ref)
    assert out.tokens[0] == refs[0][:4] and gen.stop_rule.asked > 0


def test_box_stop_fires_on_a_closed_box_only():
    from spiral.model import load_tokenizer
    from spiral.prompting import BoxStop

    tok = load_tokenizer("tiny")
    rule = BoxStop(tok)
    closed = tok("Think: bet wins. \\boxed{bet} and more", add_special_tokens=False)["input_ids"]
    opened = tok("Think: bet wins. \\boxed{be", add_special_tokens=False)["input_ids"]
    assert rule.closes(closed) and not rule.closes(opened)
    # the token that closes the box triggers a check
    assert any(i in rule.trigger_ids.tolist() for i in closed)
    assert len(rule.trigger_ids) < len(tok) // 10  # few ids can close a box

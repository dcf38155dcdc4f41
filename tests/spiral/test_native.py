"""The fused native decode kernels (spiral.generation.native): loading, fallbacks, and FastGenerator with them on vs off.

The kernels are compiled once per machine (a few seconds, cached); the tests that need them skip when no C++
compiler is available. Tests of the failure paths reset `spiral.generation.native`'s module state with monkeypatch, which
restores it afterwards.
"""

from __future__ import annotations

import os
import platform

import pytest
import torch
import torch.nn.functional as F
from test_engine import EOS, PAD, forward_logprobs, hf_greedy, make_prompts, sharp_llama

from spiral.generation import native
from spiral.generation.base import Sampling
from spiral.generation.fast import FastGenerator, linear
from spiral.generation.fast.cache import KVCaches


def require_kernels() -> native.Kernels:
    """The loaded kernels; skips when they cannot be built here, fails when they should have been."""
    if os.environ.get("SPIRAL_NATIVE") == "0":
        pytest.skip("native kernels turned off by SPIRAL_NATIVE=0")
    if native._compiler() is None:
        pytest.skip("no C++ compiler: the engine uses its torch decode step")
    kernels = native.load()
    assert kernels is not None, native.error
    return kernels


def tiny_llama(hidden: int, heads: int, kv_heads: int, head_dim: int | None = None, init: float = 0.4):
    """A random 2-layer Llama of the given attention shape (vocabulary 97, as make_prompts expects)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=97, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                      num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=head_dim,
                      max_position_embeddings=512, tie_word_embeddings=True, initializer_range=init,
                      pad_token_id=PAD, eos_token_id=EOS, bos_token_id=None)  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return LlamaForCausalLM(cfg).float().eval()


def reset_native(monkeypatch) -> None:
    """Make the next `native.load()` try again (monkeypatch restores the loaded kernels afterwards)."""
    monkeypatch.setattr(native, "_lib", None)
    monkeypatch.setattr(native, "_tried", False)
    monkeypatch.setattr(native, "error", None)


def test_kernels_build_and_the_engine_uses_them():
    kernels = require_kernels()
    assert kernels.supports(4, 2, 16)  # sharp_llama's shape: the other tests run the native path
    assert FastGenerator(sharp_llama(), [EOS], PAD, torch.float32).kernels is not None
    bf16 = FastGenerator(sharp_llama(), [EOS], PAD, torch.bfloat16)
    assert bf16.kernels is not None
    # with AVX512-BF16 and no AMX the bf16 weights are packed for the native matmul, else for oneDNN or left plain
    assert isinstance(bf16.layers[0].wgu, native.PackedLinear) == (kernels.has_gemm and native.gemm_wanted())
    assert FastGenerator(sharp_llama(), [EOS], PAD, torch.float32, native=False).kernels is None


@pytest.mark.parametrize("share_prefix", [True, False])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_native_fp32_decode_equals_the_torch_decode(share_prefix, temperature):
    """Same tokens and log-probs with the kernels on and off; grow=3 resizes the cache amid compactions."""
    require_kernels()
    model = sharp_llama()
    prompts = make_prompts()
    eos = hf_greedy(model, prompts[0], 24, eos=-1)[6] if temperature == 0 else EOS
    s = Sampling(temperature, 1.0, max_new_tokens=24)
    outs = []
    for flag in (None, False):
        gen = FastGenerator(model, [eos], PAD, torch.float32, batch_size=4, seed=7, share_prefix=share_prefix,
                            grow=3, native=flag)  # fmt: skip
        assert (gen.kernels is not None) == (flag is None)
        outs.append(gen.generate(prompts, s))
    fast, ref = outs
    assert fast.tokens == ref.tokens and fast.truncated == ref.truncated
    assert any(not t for t in ref.truncated) and any(ref.truncated)  # rows end at different steps
    for a, b in zip(fast.logprobs, ref.logprobs, strict=True):
        torch.testing.assert_close(torch.tensor(a), torch.tensor(b), atol=1e-4, rtol=1e-4)


def bf16_errors(model, prompts, out) -> torch.Tensor:
    """|log-prob - fp32 forward log-prob| of every sampled token."""
    return torch.cat([
        (torch.tensor(lps) - forward_logprobs(model, p, toks, 1.0)).abs()
        for p, toks, lps in zip(prompts, out.tokens, out.logprobs, strict=True)
    ])  # fmt: skip


@pytest.mark.parametrize("share_prefix", [True, False])
def test_native_bf16_logprobs_are_as_close_to_fp32_as_the_torch_path(share_prefix):
    require_kernels()
    model = sharp_llama(init=0.1)  # bf16 rounding grows with the logits' scale; keep them moderate
    prompts = make_prompts()
    s = Sampling(1.0, 1.0, max_new_tokens=16)
    errs = {}
    for flag in (None, False):
        gen = FastGenerator(model, [EOS], PAD, torch.bfloat16, batch_size=4, seed=2, share_prefix=share_prefix,
                            grow=3, native=flag)  # fmt: skip
        assert (gen.kernels is not None) == (flag is None)
        out = gen.generate(prompts, s)
        assert sum(len(t) for t in out.tokens) > 20
        errs[flag] = bf16_errors(model, prompts, out)
    fast, ref = errs[None], errs[False]
    # measured: mean ~0.008, max ~0.03 on both paths
    assert fast.mean() < 0.025 and fast.max() < 0.15, fast
    assert ref.mean() < 0.025, ref
    assert fast.mean() < 1.5 * ref.mean() + 0.002, (fast.mean(), ref.mean())


@pytest.mark.parametrize(
    "hidden,heads,kv_heads,head_dim",
    [
        (96, 6, 2, 64),  # head_dim 64, 3 query heads per KV head (SmolLM2's attention shape, fewer heads)
        (128, 4, 2, None),  # head_dim 32, 2 per KV head
        (64, 8, 1, 16),  # 8 per KV head
        (48, 12, 2, 16),  # 6 per KV head
        (64, 2, 2, 128),  # head_dim 128, plain multi-head attention
    ],
)
def test_native_greedy_equals_hf_generate_for_other_attention_shapes(hidden, heads, kv_heads, head_dim):
    kernels = require_kernels()
    model = tiny_llama(hidden, heads, kv_heads, head_dim)
    assert kernels.supports(heads, kv_heads, head_dim or hidden // heads)
    prompts = make_prompts()
    eos = hf_greedy(model, prompts[0], 20, eos=-1)[6]  # the first row stops early, the others later
    fast = FastGenerator(model, [eos], PAD, torch.float32, batch_size=5, grow=4)
    assert fast.kernels is not None
    out = fast.generate(prompts, Sampling(temperature=0.0, max_new_tokens=20))
    refs = [hf_greedy(model, p, 20, eos) for p in prompts]
    assert out.tokens == refs
    assert len({t for r in refs for t in r}) > 5  # the model does not just repeat one token
    assert not out.truncated[0] and len(out.tokens[0]) <= 7
    for p, toks, lps in zip(prompts, out.tokens, out.logprobs, strict=True):
        torch.testing.assert_close(
            torch.tensor(lps), forward_logprobs(model, p, toks, 1.0), atol=1e-4, rtol=1e-4
        )


@pytest.mark.parametrize(
    "hidden,heads,kv_heads,head_dim", [(96, 6, 2, 64), (128, 4, 2, None), (64, 2, 2, 128)]
)
def test_native_bf16_is_as_close_to_fp32_as_the_torch_path_for_wider_heads(hidden, heads, kv_heads, head_dim):
    """bf16 with head_dim 32, 64 (SmolLM2's) and 128, where RoPE and the attention take their AVX-512 forms."""
    require_kernels()
    model = tiny_llama(hidden, heads, kv_heads, head_dim, init=0.1)
    prompts = make_prompts()
    errs = {}
    for flag in (None, False):
        gen = FastGenerator(model, [EOS], PAD, torch.bfloat16, batch_size=4, seed=1, native=flag)
        assert (gen.kernels is not None) == (flag is None)
        out = gen.generate(prompts, Sampling(1.0, 1.0, max_new_tokens=16))
        errs[flag] = bf16_errors(model, prompts, out)
    fast, ref = errs[None], errs[False]
    assert fast.mean() < 1.5 * ref.mean() + 0.002, (fast.mean(), ref.mean())
    assert fast.max() < 0.15, fast.max()


@pytest.mark.parametrize("n,k", [(97, 64), (48, 48), (200, 2), (960, 576), (576, 1536)])
def test_packed_bf16_matmul_is_as_close_to_fp32_as_f_linear(n, k):
    """The native bf16 matmul against an fp32 matmul of the same bf16 inputs, next to F.linear's bf16 result: row
    counts on both sides of its narrow-panel (<= 16 rows) and row-chunk (128 rows) switches, and column counts
    that leave a partial block of 16 (masked stores) or a partial panel of 3 blocks."""
    kernels = require_kernels()
    if not kernels.has_gemm:
        pytest.skip("this build has no AVX512-BF16: bf16 matmuls stay with oneDNN")
    g = torch.Generator().manual_seed(n + k)
    w = torch.randn(n, k, generator=g).bfloat16()
    packed = kernels.pack(w)
    assert packed is not None and (packed.out_features, packed.in_features) == (n, k)
    for m in (1, 7, 16, 17, 64, 131, 300):
        x = torch.randn(m, k, generator=g).bfloat16()
        ref = x.float() @ w.float().T
        got, torch_out = linear(x, packed), F.linear(x, w)
        assert got.dtype == torch.bfloat16 and got.shape == (m, n)
        err, torch_err = (got.float() - ref).abs(), (torch_out.float() - ref).abs()
        # bf16 rounding of the same fp32 sums, taken in another order: within one rounding step of F.linear
        assert err.max() <= 1.01 * torch_err.max() + 1e-6, (m, err.max(), torch_err.max())
        assert err.mean() <= 1.1 * torch_err.mean() + 1e-6, (m, err.mean(), torch_err.mean())
    assert linear(torch.zeros(0, k).bfloat16(), packed).shape == (0, n)
    assert linear(x.view(2, m // 2, k), packed).shape == (2, m // 2, n)
    with pytest.raises(ValueError, match="bf16"):
        linear(x.float(), packed)


def test_amx_cpus_and_spiral_native_gemm_0_keep_onednn_matmuls(monkeypatch):
    kernels = require_kernels()
    if not kernels.has_gemm:
        pytest.skip("this build has no AVX512-BF16: bf16 matmuls stay with oneDNN anyway")
    amx = "amx_bf16" in native._cpu_flags().split()
    assert native.gemm_wanted() == (not amx)  # AMX machines keep oneDNN's tile matmuls

    def packs_natively() -> bool:
        gen = FastGenerator(sharp_llama(), [EOS], PAD, torch.bfloat16)
        assert gen.kernels is not None
        assert gen.native_gemm == isinstance(gen.layers[0].wgu, native.PackedLinear)
        return gen.native_gemm

    assert packs_natively() == (not amx)
    monkeypatch.setattr(native, "_cpu_flags", lambda: "flags : fpu avx512f avx512_bf16")  # as if without AMX
    assert native.gemm_wanted() and packs_natively()
    monkeypatch.setattr(native, "_cpu_flags", lambda: "flags : fpu avx512f avx512_bf16 amx_bf16 amx_tile")
    assert not native.gemm_wanted() and not packs_natively()
    monkeypatch.undo()
    monkeypatch.setenv("SPIRAL_NATIVE_GEMM", "0")
    assert not native.gemm_wanted() and not packs_natively()


def test_packed_matmul_declines_what_it_cannot_do():
    kernels = require_kernels()
    assert kernels.pack(torch.randn(32, 7).bfloat16()) is None  # odd input features: oneDNN instead
    assert kernels.pack(torch.randn(32, 8)) is None  # fp32 stays with MKL


@pytest.mark.parametrize(
    "hidden,heads,kv_heads",
    [
        (96, 2, 1),  # head_dim 48
        (80, 5, 1),  # 5 query heads per KV head
        (48, 6, 6),  # head_dim 8
    ],
)
def test_unsupported_attention_shapes_fall_back_to_the_torch_decode(hidden, heads, kv_heads):
    require_kernels()
    model = tiny_llama(hidden, heads, kv_heads)
    fast = FastGenerator(model, [EOS], PAD, torch.float32, batch_size=5)
    assert fast.kernels is None
    prompts = make_prompts()
    out = fast.generate(prompts, Sampling(temperature=0.0, max_new_tokens=12))
    assert out.tokens == [hf_greedy(model, p, 12, EOS) for p in prompts]
    with pytest.raises(RuntimeError, match="native decode kernels unavailable"):
        FastGenerator(model, [EOS], PAD, torch.float32, native=True)


def test_spiral_native_0_turns_the_kernels_off(monkeypatch):
    reset_native(monkeypatch)
    monkeypatch.setenv("SPIRAL_NATIVE", "0")
    assert native.load() is None
    assert "SPIRAL_NATIVE" in native.error
    model = sharp_llama()
    prompts = make_prompts()
    fast = FastGenerator(model, [EOS], PAD, torch.float32)
    assert fast.kernels is None
    out = fast.generate(prompts, Sampling(temperature=0.0, max_new_tokens=8))
    assert out.tokens == [hf_greedy(model, p, 8, EOS) for p in prompts]
    with pytest.raises(RuntimeError, match="SPIRAL_NATIVE"):
        FastGenerator(model, [EOS], PAD, torch.float32, native=True)


def test_no_compiler_falls_back(monkeypatch, tmp_path):
    reset_native(monkeypatch)
    monkeypatch.delenv("SPIRAL_NATIVE", raising=False)
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no c++, g++ or clang++
    monkeypatch.setenv("SPIRAL_NATIVE_CACHE", str(tmp_path / "cache"))
    assert native.load() is None
    assert "compiler" in native.error
    assert FastGenerator(sharp_llama(), [EOS], PAD, torch.float32).kernels is None


def fake_compiler(tmp_path, body: str) -> str:
    """A stand-in compiler running `body` for a build (`$out`: the file after -o); `--version` prints a line."""
    path = tmp_path / "fake-c++"
    head = '#!/bin/sh\n[ "$1" = --version ] && { echo "fake 1.0"; exit 0; }\n'
    path.write_text(head + 'while [ $# -gt 0 ]; do [ "$1" = -o ] && out=$2; shift; done\n' + body)
    path.chmod(0o755)
    return str(path)


def test_a_failing_compiler_leaves_no_partial_library(monkeypatch, tmp_path):
    reset_native(monkeypatch)
    monkeypatch.delenv("SPIRAL_NATIVE", raising=False)
    # writes part of its output, then fails
    cxx = fake_compiler(tmp_path, 'echo partial > "$out"\necho "decode.cpp:1: error: boom" >&2\nexit 1\n')
    cache = tmp_path / "cache"
    monkeypatch.setenv("CXX", cxx)
    monkeypatch.setenv("SPIRAL_NATIVE_CACHE", str(cache))
    assert native.load() is None
    assert "error: boom" in native.error
    assert not cache.exists() or list(cache.iterdir()) == []
    assert native.load() is None  # the failure is remembered, not retried
    model = sharp_llama()
    assert FastGenerator(model, [EOS], PAD, torch.float32).kernels is None
    with pytest.raises(RuntimeError, match="boom"):
        FastGenerator(model, [EOS], PAD, torch.float32, native=True)


def test_a_library_that_does_not_load_is_reported(monkeypatch, tmp_path):
    reset_native(monkeypatch)
    monkeypatch.delenv("SPIRAL_NATIVE", raising=False)
    cxx = fake_compiler(tmp_path, 'echo "not a shared library" > "$out"\nexit 0\n')
    monkeypatch.setenv("CXX", cxx)
    monkeypatch.setenv("SPIRAL_NATIVE_CACHE", str(tmp_path / "cache"))
    assert native.load() is None
    assert "spiral_decode" in native.error  # names the library that failed to load
    assert FastGenerator(sharp_llama(), [EOS], PAD, torch.float32).kernels is None


@pytest.mark.parametrize("width", [576, 37])  # 37: the vector loops' partial last block
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_norm_and_activation_kernels_round_as_torch_does(dtype, width):
    """add_rms and silu_mul against the torch ops they replace: bf16 results rounded the same way (to nearest)."""
    kernels = require_kernels()
    g = torch.Generator().manual_seed(0)
    x, y = (torch.randn(7, width, generator=g).to(dtype) for _ in range(2))
    w = (1 + 0.3 * torch.randn(width, generator=g)).to(dtype)
    gu = (3 * torch.randn(7, 2 * (width - 16), generator=g)).to(dtype)
    s = x + y  # the residual stream, rounded to dtype
    h = s.float()
    want_rms = w * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-5)).to(dtype)
    gate, up = gu.chunk(2, dim=-1)
    want_act = torch.nn.functional.silu(gate) * up
    out, act = torch.empty_like(x), torch.empty(7, width - 16, dtype=dtype)
    kernels.add_rms(x, y, w, out, 1e-5)
    kernels.silu_mul(gu, act)
    assert torch.equal(x, s)
    for got, want in ((out, want_rms), (act, want_act)):
        if dtype == torch.float32:  # products and sums may be fused: equal up to the last bits
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        else:  # a last-bit difference in the fp32 statistics may flip a rounding now and then, not often
            torch.testing.assert_close(got, want, atol=1e-5, rtol=8e-3)
            assert (got != want).float().mean() < 0.02


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_native_sampler_draws_what_the_torch_sampler_draws(dtype):
    """Same uniforms -> same ids as the float64 cumulative-sum sampler; frequencies follow softmax(x / T)."""
    from spiral.generation.base import sample_cdf

    kernels = require_kernels()
    logits = (torch.randn(32, 5000, generator=torch.Generator().manual_seed(0)) * 3).to(dtype)
    a, la = sample_cdf(logits, 0.8, 1.0, torch.Generator().manual_seed(5), None)
    b, lb = sample_cdf(logits, 0.8, 1.0, torch.Generator().manual_seed(5), kernels)
    assert torch.equal(a, b)
    torch.testing.assert_close(lb, la, atol=1e-4, rtol=0)
    row = torch.tensor([[0.3, -1.0, 2.0, 0.0, 1.1, -3.0, 0.7]]).to(dtype)
    n = 100_000
    u = torch.rand(n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ids, logp = kernels.sample(row.expand(n, -1).contiguous(), u, 1.3)
    p = torch.softmax(row[0].float() / 1.3, -1).double()
    freq = torch.bincount(ids, minlength=7).double() / n
    assert (freq - p).abs().max() < 0.005  # ~3 standard errors at p = 0.5
    torch.testing.assert_close(logp, p.log().float()[ids], atol=1e-5, rtol=0)


def poison_caches(monkeypatch) -> None:
    """Fill every new cache with NaN instead of leaving it uninitialised (reading an unwritten slot shows)."""
    new_cache = KVCaches.new

    def poisoned(self, *args, **kwargs):
        cache = new_cache(self, *args, **kwargs)
        cache.k.fill_(float("nan"))
        cache.v.fill_(float("nan"))
        return cache

    monkeypatch.setattr(KVCaches, "new", poisoned)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_native_caches_never_read_unwritten_slots(dtype, monkeypatch):
    """The native caches start uninitialised: filled with NaN instead, generation must not change at all."""
    require_kernels()
    model, prompts = sharp_llama(), make_prompts()
    s = Sampling(temperature=1.0, max_new_tokens=20)
    eos = hf_greedy(model, prompts[0], 20, eos=-1)[5]  # rows finish at different steps: the row map shrinks
    clean = FastGenerator(model, [eos], PAD, dtype, batch_size=8, seed=2).generate(prompts, s)
    poison_caches(monkeypatch)
    dirty = FastGenerator(model, [eos], PAD, dtype, batch_size=8, seed=2).generate(prompts, s)
    assert dirty.tokens == clean.tokens
    assert dirty.logprobs == clean.logprobs  # also no NaN


@pytest.mark.parametrize("flags", [["-mno-avx512bf16"], ["-march=x86-64-v3"]], ids=["no-bf16-dot", "avx2"])
def test_portable_code_paths_agree_with_the_default_build(flags):
    """The bf16 path without dot-product instructions, and an AVX2-only build, give the default build's results."""
    require_kernels()
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("x86 compiler flags")
    try:
        variant = native.Kernels(native.build(native._compiler(), flags))
    except (OSError, RuntimeError) as e:
        pytest.skip(f"the compiler cannot build {flags}: {e}")
    model, prompts = sharp_llama(), make_prompts()
    for dtype, tol in ((torch.float32, 1e-4), (torch.bfloat16, 0.05)):
        default = FastGenerator(model, [EOS], PAD, dtype, batch_size=8)
        other = FastGenerator(model, [EOS], PAD, dtype, batch_size=8)
        other.kernels = variant
        greedy = Sampling(temperature=0.0, max_new_tokens=12)
        a, b = default.generate(prompts, greedy), other.generate(prompts, greedy)
        assert b.tokens == a.tokens
        for la, lb in zip(a.logprobs, b.logprobs, strict=True):
            torch.testing.assert_close(torch.tensor(lb), torch.tensor(la), atol=tol, rtol=0)


def long_padding_prompts() -> list[list[int]]:
    """Own parts of 2 to 45 tokens after one shared prefix, plus a short unrelated prompt: rows whose left padding
    spans whole 16-slot blocks, which the native attention skips (Cache.own_start)."""
    g = torch.Generator().manual_seed(5)

    def rand(n: int) -> list[int]:
        return torch.randint(2, 97, (n,), generator=g).tolist()

    base = rand(36)
    return [base + rand(45), base + rand(2), base + rand(19), rand(3)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rows_with_long_left_padding_skip_it_and_match(dtype, monkeypatch):
    """Greedy equals Hugging Face (fp32) and equals the torch path (bf16) when padding blocks are skipped, with
    NaN in every unwritten cache slot."""
    require_kernels()
    model = sharp_llama(init=0.4 if dtype == torch.float32 else 0.1)
    prompts = long_padding_prompts()
    s = Sampling(temperature=0.0, max_new_tokens=16)
    # the torch path reads every slot (zero-filled): its reference comes before the poisoning
    ref = FastGenerator(model, [EOS], PAD, dtype, batch_size=8, native=False).generate(prompts, s)
    poison_caches(monkeypatch)
    fast = FastGenerator(model, [EOS], PAD, dtype, batch_size=8)
    assert fast.kernels is not None
    out = fast.generate(prompts, s)
    assert fast.timing["decode_steps"] > 0
    if dtype == torch.float32:
        assert out.tokens == [hf_greedy(model, p, 16, EOS) for p in prompts]
    else:
        errs = torch.cat(
            [torch.tensor(a) - torch.tensor(b) for a, b in zip(out.logprobs, ref.logprobs, strict=True)]
        )
        assert out.tokens == ref.tokens and errs.abs().max() < 0.05

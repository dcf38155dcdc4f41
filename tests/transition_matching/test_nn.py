import pytest
import torch

from transition_matching.cost import count_flops
from transition_matching.nn.backbone import KVCache, MLPBackbone, TransformerBackbone, attention_mask
from transition_matching.nn.head import FlowHead


def _backbone(max_len: int) -> TransformerBackbone:
    torch.manual_seed(0)
    return TransformerBackbone(token_dim=3, width=16, depth=2, heads=2, max_len=max_len, num_classes=4).eval()


def test_artm_mask_is_full_over_x_t_and_causal_over_x_next():
    n = 3
    pos = torch.arange(2 * n - 1)
    m = attention_mask("artm", pos, pos, n_prefix=n)
    assert m[:n, :n].all() and not m[:n, n:].any()  # X_t sees all of X_t, nothing of X_{t+1}
    assert m[n:, :n].all()  # X_{t+1} tokens see all of X_t
    assert torch.equal(m[n:, n:], torch.ones(n - 1, n - 1, dtype=torch.bool).tril())


@torch.no_grad()
def test_artm_output_for_token_i_ignores_tokens_from_i_on():
    """Contract (d): h for token i of X_{t+1} does not change when tokens >= i of X_{t+1} change."""
    n, B = 4, 2
    net = _backbone(2 * n - 1)
    g = torch.Generator().manual_seed(0)
    X_t, X_next = torch.randn(B, n, 3, generator=g), torch.randn(B, n, 3, generator=g)
    t, y = torch.full((B, 2 * n - 1), 0.5), torch.tensor([1, 2])

    def h(xn):
        return net(torch.cat([X_t, xn[:, :-1]], 1), t, y, "artm", n)[:, n - 1 :]  # (B, n, w)

    base = h(X_next)
    for i in range(n):
        moved = X_next.clone()
        moved[:, i:] += torch.randn(B, n - i, 3, generator=g)
        assert torch.allclose(h(moved)[:, i], base[:, i], atol=1e-6)
        if i + 1 < n:  # and token i + 1 does see token i
            assert not torch.allclose(h(moved)[:, i + 1], base[:, i + 1], atol=1e-4)


@torch.no_grad()
def test_causal_output_ignores_later_positions():
    """Contract (d) for FHTM: position p (predicting token p + 1) ignores positions > p."""
    L, B = 7, 2
    net = _backbone(L)
    x = torch.randn(B, L, 3)
    t = torch.rand(B, L)
    base = net(x, t, None, "causal")
    for p in range(L - 1):
        moved = x.clone()
        moved[:, p + 1 :] += 1.0
        out = net(moved, t, None, "causal")
        assert torch.allclose(out[:, : p + 1], base[:, : p + 1], atol=1e-6)
        assert not torch.allclose(out[:, p + 1], base[:, p + 1], atol=1e-4)


@torch.no_grad()
@pytest.mark.parametrize("mode, prefix", [("causal", 1), ("artm", 3)])
def test_kv_cache_matches_a_full_pass(mode, prefix):
    L, B = 6, 3
    net = _backbone(L)
    x, t = torch.randn(B, L, 3), torch.rand(B, L)
    full = net(x, t, torch.tensor([0, 1, 4]), mode, prefix)
    cache = KVCache()
    parts = [net(x[:, :prefix], t[:, :prefix], torch.tensor([0, 1, 4]), mode, prefix, cache)]
    for p in range(prefix, L):
        parts.append(net(x[:, p : p + 1], t[:, p : p + 1], torch.tensor([0, 1, 4]), mode, prefix, cache))
    assert cache.length == L
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5)


def test_class_embedding_has_a_null_class_and_time_matters():
    net = _backbone(2)
    x = torch.randn(2, 2, 3)
    a = net(x, torch.zeros(2, 2), None)
    b = net(x, torch.zeros(2, 2), torch.tensor([4, 4]))  # 4 is the null class of 4 labels
    c = net(x, torch.ones(2, 2), None)
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_mlp_backbone_takes_one_token():
    net = MLPBackbone(2, 16, 2, 0)
    assert net(torch.randn(5, 1, 2), torch.rand(5, 1), None).shape == (5, 1, 16)
    with pytest.raises(ValueError):
        net(torch.randn(5, 2, 2), torch.rand(5, 2), None)


def test_head_shapes_and_zero_init():
    head = FlowHead(token_dim=4, cond_dim=16, width=32, depth=2, use_t=True)
    out = head(torch.randn(10, 16), torch.randn(10, 4), torch.rand(10), torch.rand(10))
    assert out.shape == (10, 4) and torch.equal(out, torch.zeros(10, 4))  # zero-initialised output layer
    no_t = FlowHead(4, 16, 32, 2, use_t=False)
    assert no_t.t_embed is None and no_t(torch.randn(3, 16), torch.randn(3, 4), torch.rand(3)).shape == (3, 4)


# ----------------------------------------------------------------------------------------- the head's split


def _random_head(use_t: bool = True, token_dim: int = 3, cond_dim: int = 24) -> FlowHead:
    """A head with every weight drawn at random (the zero-initialised layers would hide errors)."""
    torch.manual_seed(1)
    head = FlowHead(token_dim, cond_dim, width=16, depth=2, use_t=use_t)
    for p in head.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return head.eval()


def _old_forward(head: FlowHead, h, Y_s, s, t=None):
    """The head as it was before the split: the whole condition cond(h) + s_embed(s) [+ t_embed(t)] per call."""
    from transition_matching.nn.head import _modulate

    c = head.cond(h) + head.s_embed(s)
    if head.t_embed is not None:
        c = c + head.t_embed(t)
    x = head.embed(Y_s)
    for block in head.blocks:
        x = block(x, c)
    shift, scale = head.final_ada(c).chunk(2, dim=-1)
    return head.out(_modulate(head.final_norm(x), shift, scale))


@torch.no_grad()
@pytest.mark.parametrize("use_t", [True, False])
def test_split_head_gives_the_numbers_of_the_whole_head(use_t):
    head = _random_head(use_t)
    g = torch.Generator().manual_seed(0)
    h, Y, s, t = (
        torch.randn(7, 24, generator=g),
        torch.randn(7, 3, generator=g),
        torch.rand(7, generator=g),
        None,
    )
    if use_t:
        t = torch.rand(7, generator=g)
    ref = _old_forward(head, h, Y, s, t)
    assert ref.abs().max() > 0.1
    torch.testing.assert_close(head(h, Y, s, t), ref, rtol=1e-5, atol=1e-5)
    cond = head.condition(h, t)
    torch.testing.assert_close(head.step(cond, Y, s), ref, rtol=1e-5, atol=1e-5)
    shared = torch.full((7,), 0.3)  # one s for all rows, as the head ODE has: a (1,) tensor broadcasts
    torch.testing.assert_close(
        head.step(cond, Y, torch.full((1,), 0.3)), _old_forward(head, h, Y, shared, t), rtol=1e-5, atol=1e-5
    )
    torch.testing.assert_close(head.step(cond.repeat(2), Y.repeat(2, 1), s.repeat(2)), ref.repeat(2, 1))


@torch.no_grad()
def test_head_ode_equals_the_old_per_step_head():
    """solve_head (condition once, s per step) gives the samples of the old loop that ran the whole head at
    every step, with and without guidance."""
    from transition_matching.methods.base import SampleOptions, guidance, solve_head

    head = _random_head()
    h, t = torch.randn(10, 24), torch.rand(10)
    for scale in (1.0, 2.0):
        g = guidance(torch.arange(5) % 2 if scale != 1.0 else None, scale, 2)
        rows = h if g.active else h[:5]
        opts = SampleOptions(head_steps=4)
        got = solve_head(head, rows, t[: len(rows)], g, opts, torch.Generator().manual_seed(3), 3).x
        Y = torch.randn(5, 3, generator=torch.Generator().manual_seed(3))
        for i in range(4):
            s = torch.full((len(rows),), i / 4)
            Y = Y + 0.25 * g.combine(_old_forward(head, rows, g.batch(Y), s, t[: len(rows)]))
        torch.testing.assert_close(got, Y, rtol=1e-5, atol=1e-5)


def _count_calls(module: torch.nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@torch.no_grad()
def test_dtm_computes_the_h_condition_once_per_transition():
    """T transitions of S head steps: cond(h) and t_embed run T times, the s embedding T x S times."""
    from transition_matching.methods import MethodConfig, SampleOptions, TMModel, build_method

    T, S = 3, 4
    head = FlowHead(2, 16, 16, 2, use_t=True)
    model = TMModel(MLPBackbone(2, 16, 1, 3), head, None, 3).eval()
    cond, t_emb, s_emb = _count_calls(head.cond), _count_calls(head.t_embed), _count_calls(head.s_embed)
    res = build_method(MethodConfig("dtm")).sample(
        model,
        (5, 1, 2),
        torch.arange(5) % 3,
        SampleOptions(steps=T, head_steps=S, cfg=2.0),
        torch.Generator(),
    )
    assert (res.backbone_evals, res.head_evals) == (T, T * S)
    assert (cond[0], t_emb[0], s_emb[0]) == (T, T, T * S)


@torch.no_grad()
def test_a_head_step_costs_less_than_the_whole_head():
    """Per head step the cond(h) projection and the t embedding are gone (paid once per transition), and the
    s embedding runs on one row: a step costs exactly embed + blocks + final layer per row, less than the old
    whole-head call by the cond_dim x width projection and more, and it is not slower in wall time."""
    import time

    head = _random_head(cond_dim=256)
    N, w = 512, head.width
    h, Y, t, s1 = torch.randn(N, 256), torch.randn(N, 3), torch.rand(N), torch.full((1,), 0.5)
    cond = head.condition(h, t)
    old = count_flops(lambda: _old_forward(head, h, Y, s1.expand(N), t))
    new = count_flops(lambda: head.step(cond, Y, s1))
    per_row = 3 * w + 2 * (3 * w * w + 2 * w * w) + 2 * w * w + w * 3  # embed, 2 blocks, final AdaLN, out
    assert new == 2 * (N * per_row + 64 * w + w * w)  # + the s embedding of one row
    assert old - new >= 2 * N * (256 * w + 64 * w + w * w)  # cond(h) and t_embed, no longer per step

    def best(fn) -> float:
        times = []
        for _ in range(15):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    assert best(lambda: head.step(cond, Y, s1)) < best(lambda: _old_forward(head, h, Y, s1.expand(N), t))

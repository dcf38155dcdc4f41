import pytest
import torch

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

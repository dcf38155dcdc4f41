import math
import re

import pytest
import torch
from torch import nn

from runkit.errors import UserError
from transition_matching.config import make_config, resolve
from transition_matching.methods import DTM, FM, MethodConfig, SampleOptions, TMModel
from transition_matching.model import build

# ------------------------------------------------------------------ an oracle for a Gaussian mixture target

MEANS = torch.tensor([[3.0, 0.0], [-2.0, 2.0], [0.0, -3.0]])
STD = torch.tensor([0.5, 0.3, 0.8])
WEIGHTS = torch.tensor([0.5, 0.3, 0.2])


def marginal_velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Exact E[X_T - X_0 | X_t = x] for X_0 ~ N(0, I), X_T ~ mixture, X_t = (1 - t) X_0 + t X_T; x (N, 2), t (N,)."""
    t = t[:, None, None]  # (N, 1, 1)
    var = (1 - t) ** 2 + t**2 * STD[None, :, None] ** 2  # (N, K, 1)
    diff = x[:, None] - t * MEANS[None]  # (N, K, 2)
    logp = torch.log(WEIGHTS)[None] - (diff**2).sum(-1) / (2 * var[..., 0]) - torch.log(var[..., 0])
    w = torch.softmax(logp, dim=1)[..., None]  # (N, K, 1) posterior over components
    cov = t * STD[None, :, None] ** 2 - (1 - t)  # Cov(X_T - X_0, X_t) per dimension
    cond_mean = MEANS[None] + cov / var * diff  # (N, K, 2)
    return (w * cond_mean).sum(1)


class IdentityBackbone(nn.Module):
    """h = [x, t]: passes the state and time through so oracles can compute exact answers."""

    def forward(self, x, t, labels, mode="full", n_prefix=0, cache=None):
        return torch.cat([x, t[..., None]], dim=-1)


class OracleReadout(nn.Module):
    """FM velocity: the exact marginal velocity."""

    def forward(self, h):
        B, n, _ = h.shape
        return marginal_velocity(h[..., :2].reshape(-1, 2), h[..., 2].reshape(-1)).reshape(B, n, 2)


class OracleHead(nn.Module):
    """A head whose ODE carries every Y_0 exactly onto the conditional mean E[Y | X_t] (the head interface:
    condition(h, t) once per transition, step(cond, Y_s, s) per head step)."""

    def condition(self, h, t=None):
        return marginal_velocity(h[:, :2], h[:, 2])

    def step(self, mean, Y_s, s):
        return (mean - Y_s) / (1 - s[:, None])


def test_oracle_dtm_step_equals_an_fm_euler_step():
    """Contract (c): with an exact conditional-mean head every DTM step is an FM Euler step."""
    torch.set_default_dtype(torch.float64)
    try:
        fm_model = TMModel(IdentityBackbone(), None, OracleReadout(), 0)
        dtm_model = TMModel(IdentityBackbone(), OracleHead(), None, 0)
        for T in (1, 4):
            fm = FM(MethodConfig("fm")).sample(
                fm_model,
                (256, 1, 2),
                None,
                SampleOptions(steps=T, trajectory=True),
                torch.Generator().manual_seed(3),
            )
            dtm = DTM(MethodConfig("dtm")).sample(
                dtm_model, (256, 1, 2), None, SampleOptions(steps=T, head_steps=3, trajectory=True),
                torch.Generator().manual_seed(3),
            )  # fmt: skip
            assert torch.allclose(dtm.trajectory, fm.trajectory, atol=1e-9)
        # the oracle is a real velocity: one exact step from noise is not already at the data
        assert not torch.allclose(fm.X, fm.trajectory[0])
    finally:
        torch.set_default_dtype(torch.float32)


def test_oracle_velocity_matches_monte_carlo():
    g = torch.Generator().manual_seed(0)
    N = 400_000
    k = torch.multinomial(WEIGHTS, N, replacement=True, generator=g)
    X_T = MEANS[k] + STD[k, None] * torch.randn(N, 2, generator=g)
    X_0 = torch.randn(N, 2, generator=g)
    t = 0.6
    X_t = (1 - t) * X_0 + t * X_T
    near = ((X_t - torch.tensor([1.0, 0.0])) ** 2).sum(1) < 0.05**2
    mc = (X_T - X_0)[near].mean(0)
    exact = marginal_velocity(torch.tensor([[1.0, 0.0]]), torch.tensor([t]))[0]
    assert torch.allclose(mc, exact, atol=0.15)


# ------------------------------------------------------------------ real (tiny) models


def _tiny(method: str, n: int, d: int, classes: int = 0, **kw):
    cfg = resolve(
        make_config(method=method, width=16, depth=1, heads=2, head_width=16, head_depth=1, **kw), n
    )
    torch.manual_seed(0)
    return build(cfg, n, d, classes)


def test_fhtm_sequence_has_t_times_n_plus_one_tokens():
    """Contract (e)."""
    method, _ = _tiny("fhtm", 4, 3, T=3)
    seq = method.sequence(torch.randn(5, 4, 3), torch.Generator().manual_seed(0))
    assert seq.shape == (5, 3 * 4 + 1, 3)
    assert torch.equal(seq[:, 0], torch.zeros(5, 3))  # the begin token
    assert method.seq_len(4) == 3 * 4  # the backbone sees seq[:-1]


def test_fhtm_blocks_have_independent_noise():
    method, _ = _tiny("fhtm", 1, 2, schedule="0,0.5,0.75,1")
    X_T = torch.randn(4000, 1, 2)
    seq = method.sequence(X_T, torch.Generator().manual_seed(0))
    X1, X2 = seq[:, 1], seq[:, 2]  # t/T = 0.5 and 0.75
    e1, e2 = (X1 - 0.5 * X_T[:, 0]) / 0.5, (X2 - 0.75 * X_T[:, 0]) / 0.25
    assert abs(torch.corrcoef(torch.stack([e1.flatten(), e2.flatten()]))[0, 1]) < 0.05
    assert torch.allclose(seq[:, 3], X_T[:, 0])


@pytest.mark.parametrize(
    "method, solver, expect",
    [
        ("fm", "euler", lambda T, S, n: (T, 0)),
        ("fm", "midpoint", lambda T, S, n: (2 * T, 0)),
        ("dtm", "euler", lambda T, S, n: (T, T * S)),
        ("dtm", "midpoint", lambda T, S, n: (T, 2 * T * S)),
        ("artm", "euler", lambda T, S, n: (T * n, T * n * S)),
        ("fhtm", "euler", lambda T, S, n: (T * n, T * n * S)),
    ],
)
def test_evaluation_counts(method, solver, expect):
    """Contract (f): DTM T backbone and T*S head passes; ARTM/FHTM T*n backbone passes."""
    n, T, S = 4, 3, 2
    meth, model = _tiny(method, n, 2, T=T)
    opts = SampleOptions(steps=T, head_steps=S, solver=solver, head_solver=solver)
    res = meth.sample(model, (5, n, 2), None, opts, torch.Generator().manual_seed(0))
    assert res.X.shape == (5, n, 2)
    assert (res.backbone_evals, res.head_evals) == expect(T, S, n)


@pytest.mark.parametrize("method", ["artm", "fhtm"])
@pytest.mark.parametrize("cfg", [1.0, 2.5])
def test_cached_and_uncached_sampling_agree(method, cfg):
    """Contract (g): the KV cache changes speed, not samples."""
    meth, model = _tiny(method, 4, 3, classes=3, T=2)
    for p in model.parameters():  # random weights everywhere so the check is not trivial
        nn.init.normal_(p, std=0.3)
    labels = torch.tensor([0, 1, 2, 1, 0, 2])
    out = []
    for cache in (True, False):
        opts = SampleOptions(steps=2, head_steps=3, cfg=cfg, cache=cache, trajectory=True)
        out.append(meth.sample(model, (6, 4, 3), labels, opts, torch.Generator().manual_seed(7)))
    assert torch.allclose(out[0].X, out[1].X, atol=1e-4, rtol=1e-4)
    assert torch.allclose(out[0].trajectory, out[1].trajectory, atol=1e-4, rtol=1e-4)
    assert out[0].X.std() > 0.1


@pytest.mark.parametrize("method", ["fm", "dtm", "artm", "fhtm"])
def test_losses_are_finite_and_reach_every_parameter(method):
    meth, model = _tiny(method, 4, 3, classes=5, T=2, head_draws=2)
    X, y = torch.randn(8, 4, 3), torch.randint(0, 5, (8,))
    out = meth.loss(model, X, y, torch.Generator().manual_seed(0))
    assert out.loss.ndim == 0 and math.isfinite(out.loss.item())
    out.loss.backward()
    used = [p for name, p in model.named_parameters() if "pos" not in name or method != "fm"]
    assert sum(p.grad is not None for p in used) >= 0.8 * len(used)


def test_guidance_changes_samples_only_with_labels():
    meth, model = _tiny("dtm", 1, 2, classes=3)
    for p in model.parameters():
        nn.init.normal_(p, std=0.3)
    y = torch.tensor([0, 1, 2, 0])

    def draw(labels, cfg):
        return meth.sample(
            model, (4, 1, 2), labels, SampleOptions(4, 2, cfg), torch.Generator().manual_seed(0)
        ).X

    assert not torch.allclose(draw(y, 1.0), draw(y, 3.0))
    assert torch.equal(draw(None, 1.0), draw(None, 3.0))


def test_sampling_errors_are_user_errors():
    meth, model = _tiny("artm", 1, 2, T=3)
    g = torch.Generator()
    with pytest.raises(UserError, match="trained with T=3"):
        meth.sample(model, (2, 1, 2), None, SampleOptions(steps=4), g)
    dtm, dmodel = _tiny("dtm", 1, 2)
    for bad in (SampleOptions(steps=0), SampleOptions(head_steps=0), SampleOptions(solver="rk4")):
        with pytest.raises(UserError):
            dtm.sample(dmodel, (2, 1, 2), None, bad, g)


BAD_OPTIONS = [
    (SampleOptions(steps=0), "steps and head steps must be >= 1, got 0 and 4"),
    (SampleOptions(head_steps=0), "steps and head steps must be >= 1, got 16 and 0"),
    (SampleOptions(solver="rk4"), "unknown solver 'rk4'"),
    (SampleOptions(head_solver="rk4"), "unknown solver 'rk4'"),
    (SampleOptions(steps=0, solver="rk4"), "steps and head steps must be >= 1"),  # steps are checked first
]


@pytest.mark.parametrize("method", ["fm", "dtm", "artm", "fhtm"])
@pytest.mark.parametrize(("bad", "message"), BAD_OPTIONS)
def test_every_method_rejects_bad_options(method, bad, message):
    meth, model = _tiny(method, 2, 2, T=2)
    g = torch.Generator().manual_seed(0)
    with pytest.raises(UserError, match=re.escape(message)):
        meth.sample(model, (2, 2, 2), None, bad, g)
    fresh = torch.Generator().manual_seed(0)
    assert torch.equal(torch.rand(4, generator=g), torch.rand(4, generator=fresh))  # nothing was drawn


@pytest.mark.parametrize("method", ["artm", "fhtm"])
def test_causal_methods_sample_only_with_their_trained_t(method):
    meth, model = _tiny(method, 2, 2, T=2)
    with pytest.raises(
        UserError, match=f"this {method.upper()} model was trained with T=2; sample it with --steps 2"
    ):
        meth.sample(model, (2, 2, 2), None, SampleOptions(steps=3), torch.Generator())


@pytest.mark.parametrize("method", ["fm", "dtm", "artm"])
@pytest.mark.parametrize("cfg", [1.0, 2.0])
def test_initial_noise_is_the_generators_first_draw(method, cfg):
    """X_0 (the first state of the trajectory) is drawn before anything else, with or without guidance."""
    meth, model = _tiny(method, 2, 3, classes=2, T=2)
    labels = torch.tensor([0, 1, 1, 0, 1])
    opts = SampleOptions(steps=2, head_steps=2, cfg=cfg, trajectory=True)
    res = meth.sample(model, (5, 2, 3), labels, opts, torch.Generator().manual_seed(3))
    assert torch.equal(res.trajectory[0], torch.randn((5, 2, 3), generator=torch.Generator().manual_seed(3)))


def test_continuous_dtm_samples_at_any_t_and_discrete_uses_the_grid():
    meth, model = _tiny("dtm", 1, 2)
    for T in (1, 3, 16):
        assert meth.sample(model, (3, 1, 2), None, SampleOptions(T, 1), torch.Generator()).backbone_evals == T
    disc, _ = _tiny("dtm", 1, 2, dtm_time="discrete", T=4)
    tau = disc.draw_time(1000, torch.Generator().manual_seed(0))
    assert set((tau * 4).tolist()) == {0.0, 1.0, 2.0, 3.0}

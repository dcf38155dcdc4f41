"""The stochastic solver sde[:ETA]: the flow's marginals with noise along the way (no extra evaluation)."""

import pytest
import torch

from runkit.errors import UserError
from transition_matching.solvers import check_solver, evals_per_step, solve

MU, SD = 2.0, 0.5  # target N(MU, SD^2); the source is N(0, 1)


def velocity(x: torch.Tensor, s: float) -> torch.Tensor:
    """The exact velocity E[x_1 - x_0 | x_s = x] of the linear path between N(0, 1) and N(MU, SD^2)."""
    var = (1 - s) ** 2 + s**2 * SD**2
    return MU + (s * SD**2 - (1 - s)) / var * (x - s * MU)


@pytest.mark.parametrize("solver", ["euler", "sde", "sde:0.5", "sde:2"])
def test_every_solver_reaches_the_target_distribution(solver):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(40_000, 1, generator=g)
    out = solve(velocity, x0, 400, solver, generator=g)
    assert out.evals == 400
    assert float(out.x.mean()) == pytest.approx(MU, abs=0.02)
    assert float(out.x.std()) == pytest.approx(SD, abs=0.02)


def test_the_sde_moves_samples_off_their_ode_paths():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2000, 1, generator=g)
    ode = solve(velocity, x0, 50, "euler").x
    sde = solve(velocity, x0, 50, "sde", generator=g).x
    assert float((ode - sde).abs().mean()) > 0.05  # same start, different ends
    assert evals_per_step("sde:0.3") == 1


@pytest.mark.parametrize("bad", ["sde:x", "sde:-1", "sde:11", "langevin"])
def test_a_bad_solver_is_one_line(bad):
    with pytest.raises(UserError):
        check_solver(bad)


def test_tm_sample_with_the_stochastic_head_solver(tmp_path, capsys):
    from tm_testutil import tiny_argv

    from transition_matching.cli import main

    run = tmp_path / "dtm"
    assert main(["train", "--out", str(run), "--no-progress", *tiny_argv(method="dtm", steps=10)]) == 0
    out = tmp_path / "s.npz"
    base = ["sample", "--run", str(run), "--n", "64", "--steps", "4", "--head-steps", "4"]
    assert main([*base, "--head-solver", "sde:0.5", "--out", str(out)]) == 0
    import numpy as np

    assert np.isfinite(np.load(out)["x"]).all()
    capsys.readouterr()
    assert main([*base, "--head-solver", "sde:x", "--out", str(tmp_path / "t.npz")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1

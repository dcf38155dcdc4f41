"""Time sampling of FM's t, DTM's t/T and the head's s: uniform (the draws of torch.rand, so earlier runs
reproduce) or logit-normal (more weight mid-path), set per run and refused with one line when malformed."""

import json

import pytest
import torch
from tm_testutil import tiny_argv

from runkit.errors import UserError
from transition_matching.cli import main
from transition_matching.processes import draw_unit_time, head_path, parse_time_dist


def test_uniform_is_torch_rand():
    a = draw_unit_time(1000, "uniform", torch.Generator().manual_seed(3))
    assert torch.equal(a, torch.rand(1000, generator=torch.Generator().manual_seed(3)))


def test_logit_normal_weights_the_middle():
    t = draw_unit_time(20_000, "logit_normal", torch.Generator().manual_seed(0))
    assert float(t.min()) > 0 and float(t.max()) < 1
    assert float(t.mean()) == pytest.approx(0.5, abs=0.01)
    middle = float(((t > 0.25) & (t < 0.75)).float().mean())
    assert middle == pytest.approx(0.727, abs=0.015)  # P(|N(0, 1)| < logit(0.75) = 1.0986); uniform: 0.5
    shifted = draw_unit_time(20_000, "logit_normal:1,0.5", torch.Generator().manual_seed(0))
    assert float(shifted.mean()) > 0.68


def test_the_head_draws_s_from_its_distribution():
    Y = torch.zeros(20_000, 2)
    s = head_path(Y, torch.Generator().manual_seed(0), "logit_normal").s
    assert float(((s > 0.25) & (s < 0.75)).float().mean()) > 0.7


@pytest.mark.parametrize(
    "bad", ["normal", "logit_normal:0", "logit_normal:0,-1", "logit_normal:a,b", "uniform:1"]
)
def test_a_bad_distribution_is_one_line(bad):
    with pytest.raises(UserError, match="time distribution"):
        parse_time_dist(bad)


@pytest.mark.parametrize("method", ["fm", "dtm"])
def test_training_with_logit_normal_times(tmp_path, capsys, method):
    out = tmp_path / method
    argv = ["train", "--out", str(out), "--no-progress", *tiny_argv(method=method, steps=10)]
    assert main([*argv, "--time-dist", "logit_normal", "--head-time-dist", "logit_normal:0.5,1"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["time_dist"] == "logit_normal" and cfg["head_time_dist"] == "logit_normal:0.5,1"
    capsys.readouterr()
    assert (
        main(["train", "--out", str(tmp_path / "bad"), "--no-progress", *tiny_argv(), "--time-dist", "beta"])
        == 2
    )
    assert "time distribution" in capsys.readouterr().err

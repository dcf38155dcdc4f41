import dataclasses

import pytest
import torch
from tm_testutil import TINY

from runkit.checkpoint import load_checkpoint
from runkit.metrics import read_metrics
from runkit.rundir import create_run_dir
from transition_matching.config import make_config, resolve
from transition_matching.trainer import config_dict, lr_at, train


def _cfg(method: str, **kw):
    base = {
        **TINY,
        "steps": 12,
        "batch_size": 16,
        "ckpt_every": 4,
        "log_every": 2,
        "warmup": 5,
        "T": 2,
        "ema": 0.9,
    }
    cfg = make_config(method=method, data="8gaussians", **{**base, **kw})
    return resolve(cfg, 1)


def _final(path):
    run_state = load_checkpoint(sorted((path / "checkpoints").iterdir())[-1]).state
    return run_state


@pytest.mark.parametrize("method", ["dtm", "fhtm"])
def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(tmp_path, method):
    cfg = _cfg(method)
    a = create_run_dir(tmp_path / "a", config_dict(cfg), kind="tm")
    train(cfg, a, progress=False)
    b = create_run_dir(tmp_path / "b", config_dict(cfg), kind="tm")
    first = train(cfg, b, stop_at=6, progress=False)
    assert first.step == 6 and b.latest_checkpoint()[0] == 6
    second = train(cfg, b, resume=True, progress=False)
    assert second.step == 12
    sa, sb = _final(a.path), _final(b.path)
    assert sa["step"] == sb["step"] == 12
    for part in ("model", "ema"):
        for k in sa[part]:
            assert torch.equal(sa[part][k], sb[part][k]), (part, k)
    for k, v in sa["optim"]["state"][0].items():
        assert torch.equal(v, sb["optim"]["state"][0][k])
    steps = [r["step"] for r in read_metrics(b.metrics)]
    assert steps == [2, 4, 6, 8, 10, 12]  # no duplicated or missing log lines after the resume
    assert len(list(b.checkpoints.iterdir())) == cfg.keep_ckpts


def test_micro_batches_give_the_same_step_as_one_batch_of_the_same_chunks(tmp_path):
    cfg = _cfg("dtm", steps=3, accum=2)
    run = create_run_dir(tmp_path / "acc", config_dict(cfg), kind="tm")
    out = train(cfg, run, progress=False)
    assert out.step == 3 and torch.isfinite(torch.tensor(out.loss))


def test_warmup_then_constant_learning_rate():
    cfg = dataclasses.replace(_cfg("fm"), lr=1e-3, warmup=10)
    assert lr_at(cfg, 0) == pytest.approx(1e-4)
    assert lr_at(cfg, 9) == lr_at(cfg, 500) == pytest.approx(1e-3)


def test_ema_lags_the_raw_weights(tmp_path):
    cfg = _cfg("fm", steps=20, ema=0.99)
    run = create_run_dir(tmp_path / "e", config_dict(cfg), kind="tm")
    train(cfg, run, progress=False)
    state = _final(run.path)
    diff = [float((state["model"][k] - state["ema"][k]).abs().max()) for k in state["model"]]
    assert max(diff) > 0

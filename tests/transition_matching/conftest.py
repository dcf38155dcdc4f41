"""Shared fixtures: one torch thread, a private classifier cache, and the DTM ablation's fake workers."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch, tmp_path_factory):
    torch.set_num_threads(1)
    monkeypatch.setenv("TM_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "tm_cache"))


@pytest.fixture
def ablation_fakes(monkeypatch):
    """Fake training, measuring (5 + seed cFID for every variant), calibration, floors and classifiers for the
    DTM ablation (study.ablation), recording their calls."""
    from tm_testutil import SECONDS, fake_row

    from transition_matching.cost import PassCost
    from transition_matching.study import budget, quality, runner, workers

    calls = {"train": [], "eval": []}

    def fake_train(root, data, seed, spec, steps, mode_name="full"):
        calls["train"].append((seed, spec["name"], steps))
        return {"data": data, "seed": seed, "name": spec["name"], "method": spec["method"], "steps": steps,
                "seconds": 1.0}  # fmt: skip

    def fake_measure(root, data, seed, mode, names, stamp):
        calls["eval"].append((seed, tuple(sorted(names))))
        return [fake_row(v, seed, 5.0 + seed, 1.0, data) for v in mode["variants"] if v["model"] in names]

    pc = PassCost(n_tokens=4, batch=256, backbone_flops=9e6, head_flops=1e5, backbone_params=4_800_000,
                  head_params=85_000, backbone_seconds=1e-4, head_seconds=2e-6)  # fmt: skip
    cal = {"step_seconds": SECONDS, "n_tokens": 4, "pass": pc.as_dict()}
    monkeypatch.setattr(workers, "train_one", fake_train)
    monkeypatch.setattr(workers, "measure_cells", fake_measure)
    monkeypatch.setattr(budget, "calibrate", lambda root, d, mode, names: cal)
    monkeypatch.setattr(quality, "floors", lambda mode, d: {"n": 20, "cfid": 1.0, "indep_acc": 0.98})
    monkeypatch.setattr(runner, "prepare_classifiers", lambda mode, todo: None)
    return calls

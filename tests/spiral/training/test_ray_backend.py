"""SPIRAL on a local 2-CPU Ray cluster with the tiny model: real actors, weights through the object store.

One cluster for the module. Checks: one worker reproduces the local backend's first step exactly (turns,
tokens, behaviour log-probs, loss, weights after the update); with two asynchronous workers, one that dies
mid-collect is restarted, its games are counted as dropped, generation runs one weight version behind, and
the run finishes and resumes from its checkpoint.
"""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray")

import torch  # noqa: E402

from runkit.metrics import read_metrics  # noqa: E402
from runkit.rundir import create_run_dir  # noqa: E402
from spiral.config import load_settings  # noqa: E402
from spiral.training.trainer import Trainer  # noqa: E402

BASE = [
    "eval.at_start=false",
    "run.plots=false",
    "run.threads=1",
    "eval.every=0",
    'eval.opponents=["random"]',
]


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster on the 2 CPUs (joined by every RayRollout of this module)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _trainer(path, *overrides) -> Trainer:
    s = load_settings("tiny-test", [*BASE, *overrides])
    return Trainer(s, create_run_dir(path, s.to_dict(), kind="spiral"), log=lambda msg: None)


def _recorded(obj):
    """Keep what `obj.collect` returns (a spy on the real call)."""
    seen, real = [], obj.collect

    def collect(n):
        seen.append(real(n))
        return seen[-1]

    obj.collect = collect
    return seen


def _turn_key(t):
    return (
        t.game_id,
        t.env_id,
        t.role,
        t.prompt_ids,
        t.response_ids,
        t.old_logprobs,
        t.final_return,
        t.advantage,
    )


def test_one_worker_first_step_equals_the_local_backend(cluster, tmp_path):
    local = _trainer(tmp_path / "local")
    remote = _trainer(tmp_path / "ray", "run.backend=ray", "run.rollout_workers=1")
    try:
        seen_local, seen_ray = _recorded(local.collector), _recorded(remote.remote)
        remote.remote.sync(remote.model, 0)
        m_local, m_ray = local.train_step(), remote.train_step()
        a, b = seen_local[0], seen_ray[0]
        assert len(a.turns) == len(b.turns) == 8
        assert [_turn_key(t) for t in a.turns] == [_turn_key(t) for t in b.turns]
        assert [(g.game_id, g.returns) for g in a.games] == [(g.game_id, g.returns) for g in b.games]
        timing = ("seconds", "per_s")
        for k, v in m_local.items():
            if not any(s in k for s in timing):
                assert m_ray[k] == v, k
        assert m_ray["train/loss"] == m_local["train/loss"] and m_local["train/samples"] > 0
        assert m_ray["rollout/weight_version"] == 0 and m_ray["rollout/weight_version_lag"] == 0
        for (name, p), q in zip(local.model.named_parameters(), remote.model.parameters(), strict=True):
            assert torch.equal(p, q), name
        # the workers' weights are the learner's latest version: the second step matches as well
        remote.remote.sync(remote.model, 1)
        assert local.train_step()["train/loss"] == remote.train_step()["train/loss"]
    finally:
        remote.remote.close()


@pytest.mark.slow
def test_async_workers_survive_a_worker_death_and_the_run_resumes(cluster, tmp_path):
    run = tmp_path / "run"
    t = _trainer(run, "run.backend=ray", "run.rollout_workers=2", "run.async_rollout=true", "run.steps=3",
                 "run.save_every=1")  # fmt: skip
    ray.get(t.remote.workers[1].crash_after.remote(1))  # a real exit in its first generation round
    t.train()
    rows = [r for r in read_metrics(run / "metrics.jsonl") if "rollout/games" in r]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert [r["rollout/worker_failures"] for r in rows] == [1, 0, 0]
    assert rows[0]["rollout/dropped_games"] > 0 and rows[1]["rollout/dropped_games"] == 0
    assert all(r["rollout/turns_kept"] == 8 and r["rollout/workers"] == 2 for r in rows)
    # generation runs one step ahead: step t+1 is played with the weights of step t
    assert [r["rollout/weight_version"] for r in rows] == [0, 0, 1]
    assert [r["rollout/weight_version_lag"] for r in rows] == [0, 1, 1]

    from runkit.rundir import open_run_dir
    from spiral.config import Settings

    folder = open_run_dir(run, kind="spiral")
    s = Settings.from_dict({k: v for k, v in folder.read_config().items() if k != "kind"})
    s.run.steps, s.run.rollout_workers = 4, 1  # two saved worker states, one worker: it is reseeded
    resumed = Trainer(s, folder, resume=True, log=lambda msg: None)
    assert resumed.step == 3
    resumed.train()
    rows = [r for r in read_metrics(run / "metrics.jsonl") if "rollout/games" in r]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert rows[-1]["rollout/weight_version"] == 3 and rows[-1]["rollout/weight_version_lag"] == 0
    assert rows[-1]["rollout/workers"] == 1

"""SPIRAL on Ray: K rollout workers (actors that each hold the policy and play games) and one learner.

The learner is the driver process (`spiral.training.trainer.Trainer` with `run.backend = "ray"`); `RayRollout` stands in
for its `RolloutCollector` (same `collect(turns_per_step) -> Rollout`). Weights travel through Ray's object
store: after each learner step one `ray.put` of the merged state dict, tagged with its version (the learner
step that produced it); each worker `ray.get`s it before its next games, so every rollout names the version
that generated it (`rollout/weight_version`, `rollout/weight_version_lag`).

- Worker seeds: worker 0 uses `run.seed` itself (one worker reproduces the local backend exactly); worker i
  uses a seed derived from (run.seed, i).
- A worker that dies is restarted by Ray (`max_restarts=-1`); the games of its lost `collect` call are dropped,
  counted (`rollout/dropped_games`, from the per-round progress each worker reports to a small `Tally`
  actor), and its share of the step is played again by the restarted worker with fresh random seeds.
- `run.async_rollout`: the workers collect step t+1 with the weights of version t while the learner updates
  to version t+1 (lag 1). The PPO ratio uses the behaviour log-probs recorded at generation, so the clip
  bounds the off-policy step; generation time is hidden behind learning.
"""

from __future__ import annotations

import os
import random
import sys
import time
import warnings
from typing import Any

import ray
import torch

from runkit.errors import UserError
from spiral.config import Settings
from spiral.model import merged_state_dict
from spiral.training.rollout import Rollout, rollout_stats

RETRIES_PER_STEP = 3  # lost collect calls of one worker in one step before the run stops


def worker_seed(seed: int, index: int) -> int:
    """Seed of rollout worker `index`: `seed` for worker 0, distinct 31-bit seeds for the others."""
    return seed if index == 0 else random.Random(f"{seed}/{index}").randrange(2**31)


def _py_state(rng: random.Random) -> list:
    v, inner, gauss = rng.getstate()
    return [v, list(inner), gauss]


def _set_py_state(rng: random.Random, state: list) -> None:
    v, inner, gauss = state
    rng.setstate((v, tuple(inner), gauss))


@ray.remote(num_cpus=0)
class Tally:
    """Games started per (worker, collect call), reported every round, so a lost call's games can be counted."""

    def __init__(self) -> None:
        self.started: dict[tuple[int, int], int] = {}

    def report(self, worker: int, call: int, started: int) -> None:
        self.started[(worker, call)] = started

    def take(self, worker: int, call: int) -> int:
        """Games the call had started (0 if it never reported); forgets the entry."""
        return self.started.pop((worker, call), 0)


class _Reporting:
    """The worker's policy as its collector sees it: reports progress (and an armed crash) once per round."""

    def __init__(self, policy, on_round) -> None:
        self.policy, self.on_round = policy, on_round

    def respond(self, observations, sampling, legal=None):
        self.on_round()
        return self.policy.respond(observations, sampling, legal)


class RolloutWorker:
    """One copy of the policy playing games for the learner (a Ray actor; `ray.remote` is applied below)."""

    def __init__(self, settings: dict, index: int, seed: int, tally: str) -> None:
        from runkit.seeding import seed_everything
        from spiral.model import load_model, load_tokenizer
        from spiral.training.factories import make_collector, make_policy

        s = Settings.from_dict(settings)
        if s.run.threads:
            torch.set_num_threads(s.run.threads)
        self.index = index
        self.tally = ray.get_actor(tally)  # by name: a handle as an argument would block restarts
        with warnings.catch_warnings():  # Ray 2.60 warns about its own use of a deprecated property here
            warnings.simplefilter("ignore")
            self.restarted = bool(ray.get_runtime_context().was_current_actor_reconstructed)
        if self.restarted:  # a restarted worker must not replay the games it already played
            seed = random.SystemRandom().randrange(2**31)
        seed_everything(seed)
        self.tokenizer = load_tokenizer(s.model.name)
        self.model = load_model(s.model.name, self.tokenizer)  # its weights are replaced before any game
        self.policy = make_policy(s, self.model, self.tokenizer, seed)
        self.collector = make_collector(s, _Reporting(self.policy, self._round), seed)
        self.version = -1
        self.call, self.call_start, self.reported = 0, 0, -1
        self.crash_in: int | None = None

    def ready(self) -> bool:
        """True once built (the learner waits for every worker before the first step)."""
        return True

    def collect(self, turns: int, weights: list, version: int, call: int) -> dict[str, Any]:
        """Load weights `version` (`weights` = [ObjectRef]) if not held yet, then collect `turns` turns."""
        if version != self.version:
            state = ray.get(weights[0])
            with torch.no_grad():
                self.model.load_state_dict(state)
            self.policy.generator.load_weights(self.model)
            self.version = version
        self.call, self.call_start, self.reported = call, self.collector.games_started, -1
        rollout = self.collector.collect(turns)
        return {"rollout": rollout, "version": self.version, "restarted": self.restarted}

    def _round(self) -> None:
        started = self.collector.games_started - self.call_start
        if started != self.reported:  # synchronous, so the count is known even if the process dies next
            ray.get(self.tally.report.remote(self.index, self.call, started))
            self.reported = started
        if self.crash_in is not None:
            self.crash_in -= 1
            if self.crash_in <= 0:
                sys.stderr.flush()
                os._exit(1)  # a real process death: Ray sees the worker die and restarts it

    def crash_after(self, rounds: int) -> None:
        """Fault injection for tests: exit the process after `rounds` more generation rounds (one-shot)."""
        self.crash_in = rounds

    def get_state(self) -> dict[str, Any]:
        """RNG states and game counter (for checkpoints)."""
        c = self.collector
        opponents = {e: _py_state(a.rng) for e, a in (c.opponents or {}).items()
                     if isinstance(getattr(a, "rng", None), random.Random)}  # fmt: skip
        return {"gen_rng": self.policy.generator.get_state(), "collector_rng": _py_state(c.rng),
                "games_started": c.games_started, "opponent_rng": opponents}  # fmt: skip

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what `get_state` returned."""
        self.policy.generator.set_state(state["gen_rng"])
        _set_py_state(self.collector.rng, state["collector_rng"])
        self.collector.games_started = int(state["games_started"])
        for env_id, st in state.get("opponent_rng", {}).items():
            _set_py_state(self.collector.opponents[env_id].rng, st)


RemoteWorker = ray.remote(RolloutWorker)


class RayRollout:
    """The learner's side: K workers, weight versions, the step's turns gathered (and re-played when lost)."""

    def __init__(self, settings: Settings, log=print) -> None:
        self.s, self.log = settings, log
        run = settings.run
        self.k, self.async_mode = run.rollout_workers, run.async_rollout
        self.own_cluster = not ray.is_initialized()
        if self.own_cluster:
            if run.ray_address:
                ray.init(address=run.ray_address)
            else:
                ray.init(num_cpus=max(self.k, os.cpu_count() or 1), include_dashboard=False)
        gpus = 1 if settings.model.generator == "vllm" else 0
        have = ray.cluster_resources()
        if have.get("CPU", 0) < self.k or have.get("GPU", 0) < gpus * self.k:
            self.close()
            raise UserError(
                f"run.rollout_workers={self.k} needs {self.k} CPUs{f' and {self.k} GPUs' if gpus else ''} in "
                f"the Ray cluster; it has {have.get('CPU', 0):g} CPUs and {have.get('GPU', 0):g} GPUs"
            )
        tally = f"spiral-tally-{os.getpid()}-{time.time_ns()}"
        self.tally = Tally.options(name=tally).remote()
        # Workers inherit the environment of the process that started their node (this one, for a local
        # cluster; `ray start` on each node of a multi-node one).
        options = dict(num_cpus=1, num_gpus=gpus, max_restarts=-1, max_task_retries=0)
        t0 = time.perf_counter()
        self.workers = [
            RemoteWorker.options(**options).remote(settings.to_dict(), i, worker_seed(run.seed, i), tally)
            for i in range(self.k)
        ]
        try:
            ray.get([w.ready.remote() for w in self.workers])
        except ray.exceptions.RayActorError as e:
            self.close()
            raise UserError(f"a rollout worker failed to start: {_reason(e)}") from None
        self.log(f"ray: {self.k} rollout worker(s) ready in {time.perf_counter() - t0:.1f} s")
        self.weights: Any = None  # ObjectRef of the newest weights
        self.version = -1
        self.calls = 0
        self.pending: list[dict] | None = None  # async: the next step's calls, already running

    # ---- weights ---------------------------------------------------------------------------------------
    def sync(self, model: torch.nn.Module, version: int) -> None:
        """Publish the learner's weights as `version` (one ray.put; workers fetch it on their next call)."""
        self.weights = ray.put(merged_state_dict(model))
        self.version = version

    # ---- rollout ---------------------------------------------------------------------------------------
    def _submit(self, index: int, turns: int) -> dict:
        self.calls += 1
        ref = self.workers[index].collect.remote(turns, [self.weights], self.version, self.calls)
        return {"worker": index, "turns": turns, "call": self.calls, "ref": ref}

    def _submit_step(self, turns_per_step: int) -> list[dict]:
        if self.weights is None:
            raise RuntimeError(
                "RayRollout.sync(model, version) must publish weights before the first collect"
            )
        shares = [turns_per_step // self.k + (i < turns_per_step % self.k) for i in range(self.k)]
        return [self._submit(i, n) for i, n in enumerate(shares) if n > 0]

    def collect(self, turns_per_step: int) -> Rollout:
        """This step's turns from every worker (their shares of `turns_per_step`), merged as one Rollout."""
        t0 = time.perf_counter()
        calls = self.pending or self._submit_step(turns_per_step)
        self.pending = None
        results, dropped, failures = [], 0, 0
        for call in calls:
            lost = 0
            while True:
                try:
                    results.append((call["worker"], ray.get(call["ref"])))
                    break
                except ray.exceptions.RayActorError as e:
                    lost += 1
                    failures += 1
                    dropped += ray.get(self.tally.take.remote(call["worker"], call["call"]))
                    self.log(
                        f"ray: rollout worker {call['worker']} died ({_reason(e)}); its games are dropped"
                    )
                    if lost > RETRIES_PER_STEP:
                        raise UserError(
                            f"rollout worker {call['worker']} died {lost} times in one step; see the Ray logs"
                        ) from None
                    self._await_restart(call["worker"])
                    call = self._submit(call["worker"], call["turns"])
            self.tally.take.remote(call["worker"], call["call"])  # forget the finished call's progress
        if self.async_mode:  # the next step starts now, with the weights the learner has before its update
            self.pending = self._submit_step(turns_per_step)
        return self._merge(results, dropped, failures, time.perf_counter() - t0)

    def _await_restart(self, index: int, timeout_s: float = 300.0) -> None:
        """Wait until Ray has restarted worker `index` (a new process builds the policy again)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                ray.get(self.workers[index].ready.remote(), timeout=max(deadline - time.monotonic(), 1.0))
                return
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as e:
                if time.monotonic() > deadline:
                    raise UserError(f"rollout worker {index} did not come back: {_reason(e)}") from None
                time.sleep(0.5)

    def _merge(self, results: list, dropped: int, failures: int, wait_s: float) -> Rollout:
        """One Rollout: game ids made unique across workers, statistics over all games, version metrics."""
        kept, games, gen_s, tokens_per_s = [], [], 0.0, 0.0
        versions = []
        for index, res in results:
            r: Rollout = res["rollout"]
            for g in r.games:
                g.game_id = g.game_id * self.k + index
                for t in g.turns:
                    t.game_id = g.game_id
            kept += r.turns
            games += r.games
            gen_s = max(gen_s, r.stats["rollout/gen_seconds"])
            tokens_per_s += r.stats["rollout/gen_tokens_per_s"]  # workers generate side by side
            versions.append(res["version"])
        pool = [t for g in games for t in g.turns]
        stats = rollout_stats(pool, kept, games)
        stats.update({
            "rollout/gen_seconds": gen_s,
            "rollout/gen_tokens_per_s": tokens_per_s,
            "rollout/seconds": wait_s,  # the learner's wait (async: the part not hidden behind learning)
            "rollout/weight_version": float(min(versions)),
            "rollout/weight_version_lag": float(self.version - min(versions)),
            "rollout/dropped_games": float(dropped),
            "rollout/worker_failures": float(failures),
            "rollout/workers": float(self.k),
        })  # fmt: skip
        return Rollout(kept, games, stats)

    # ---- checkpoints -----------------------------------------------------------------------------------
    def get_state(self) -> list[dict[str, Any]]:
        """Every worker's RNG state (async: the state after the call in flight, which a resume does not redo)."""
        return ray.get([w.get_state.remote() for w in self.workers])

    def set_state(self, states: list[dict[str, Any]] | None, step: int) -> None:
        """Restore worker states of a checkpoint; without matching ones, reseed the workers from (seed, step)."""
        if states is not None and len(states) == self.k:
            ray.get([w.set_state.remote(st) for w, st in zip(self.workers, states, strict=True)])
            return
        self.log(
            f"ray: the checkpoint holds no states for {self.k} worker(s); workers reseeded from step {step}"
        )
        seeds = [worker_seed(self.s.run.seed + step, i) for i in range(self.k)]
        fresh = []
        for w, seed in zip(self.workers, seeds, strict=True):
            st = ray.get(w.get_state.remote())
            st["gen_rng"] = torch.Generator().manual_seed(seed).get_state()
            st["collector_rng"] = _py_state(random.Random(seed))
            fresh.append(w.set_state.remote(st))
        ray.get(fresh)

    def close(self) -> None:
        """Stop the workers (and the local cluster this object started)."""
        for w in getattr(self, "workers", []):
            ray.kill(w)
        if getattr(self, "tally", None) is not None:
            ray.kill(self.tally)
        self.workers, self.tally, self.pending = [], None, None
        if self.own_cluster:
            ray.shutdown()


def _reason(e: BaseException) -> str:
    """One line of a Ray error: the worker's own exception when it has one (its last line), else the first."""
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    if not lines:
        return type(e).__name__
    last = lines[-1]
    return (last if "Error" in last.split(":")[0] else lines[0])[:300]

"""The training loop: (warm-up) -> {rollout -> RAE -> PPO update -> evaluate -> checkpoint} -> plots; resume.

A checkpoint (runkit format, written atomically) holds the model in Hugging Face format (LoRA merged, so it
loads in transformers as it is), the optimizer, the RAE baselines, every RNG state, the step and the phase;
`--resume RUN_DIR` continues from the newest one exactly as an uninterrupted run would.
"""

from __future__ import annotations

import json
import random
import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from runkit.checkpoint import (
    checkpoint_name,
    load_checkpoint,
    prune_checkpoints,
    require_state,
    save_checkpoint,
)
from runkit.distributed import World
from runkit.errors import UserError
from runkit.io import append_text, atomic_write_json, atomic_write_text, truncate_jsonl
from runkit.metrics import MetricsLogger
from runkit.progress import ProgressBar
from runkit.rundir import RunDir
from runkit.seeding import get_rng_state, seed_everything, set_rng_state
from spiral.agents.lm import LMAgent
from spiral.config import Settings
from spiral.generation.base import Sampling
from spiral.model import is_peft, plain_copy, resolve_gen_dtype
from spiral.phases import PHASES, phase_summary
from spiral.training import factories
from spiral.training.advantage import AdvantageEstimator, drop_zero
from spiral.training.distributed import Leader
from spiral.training.factories import check_settings, kuhn_one_round, make_collector, make_policy
from spiral.training.learner import _is_oom
from spiral.training.opponents import rated_pool
from spiral.training.reference import move_magnet, save_reference

EVAL_PENALTY = (-1.0, 1.0)


warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


class Trainer:
    """Owns the model, generator, rollout collector, RAE estimator and learner of one run folder."""

    def __init__(self, settings: Settings, run: RunDir, resume: bool = False, log=None, world=None) -> None:
        self.s, self.run = settings, run
        self.world = world or World()  # learner ranks under torchrun (spiral.training.distributed)
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        check_settings(settings)
        if settings.run.threads:
            torch.set_num_threads(settings.run.threads)
        seed_everything(settings.run.seed)
        ckpt = load_checkpoint(run.latest_checkpoint()[1]) if resume and run.latest_checkpoint() else None
        if ckpt is not None:  # a damaged state.json is one line, not a KeyError deep in the restore
            require_state(ckpt, step=int, warmup_done=bool, learner=dict, estimator=dict, rng=dict,
                          collector_rng=list, games_started=int)  # fmt: skip
        self.step = int(ckpt.state["step"]) if ckpt else 0
        self.train_seconds = float(ckpt.state.get("train_seconds", 0.0)) if ckpt else 0.0  # self-play only
        self.warmup_done = bool(ckpt.state["warmup_done"]) if ckpt else settings.warmup.rounds == 0
        self._build(ckpt)
        self.metrics = MetricsLogger(run.path, resume_step=self.step if ckpt else None)
        if ckpt:
            self._restore(ckpt.state)
            for log in ("transcripts/selfplay.jsonl", "eval/exploitability.jsonl"):  # drop replayed steps
                truncate_jsonl(run.path / log, self.step)
            self.log(f"resumed from {ckpt.path} at step {self.step}")

    # ---- setup ----------------------------------------------------------------------------------
    def _build(self, ckpt) -> None:
        m = self.s.model
        self.tokenizer, self.model, learner = factories.build_learner(self.s, self.run.path, ckpt, self.world)
        self.gen_dtype = resolve_gen_dtype(m.gen_dtype)
        self.policy = make_policy(self.s, self.model, self.tokenizer, self.s.run.seed)
        self.collector = make_collector(self.s, self.policy, self.s.run.seed)
        self.sampling = self.collector.sampling
        self.remote = None  # run.backend = ray: rollout workers play the games (spiral.training.ray)
        if self.s.run.backend == "ray":
            from spiral.training.ray import RayRollout

            self.remote = RayRollout(self.s, log=self.log)
        a = self.s.advantage
        self.estimator = AdvantageEstimator(
            a.estimator, a.decay, a.order, a.key_by, a.control, self.s.run.seed
        )
        self.learner = Leader(learner) if self.world.size > 1 else learner
        self.readouts: list[dict] = []  # exact Kuhn readouts of this run (eval/exploitability.jsonl)
        self.pool: list = []  # opponent pool: frozen past policies (rollout.pool_size)
        self.magnet: dict[str, torch.Tensor] | None = None  # LoRA adapters of the moving KL reference
        self.rated = rated_pool(self.s, self.collector.rng)  # draws by rating / with fixed agents, or None
        if self.s.rollout.pool_size or self.rated is not None:
            self.collector.pool = self._pool_opponent

    def _restore(self, state: dict[str, Any]) -> None:
        self.learner.load_state_dict(state["learner"])
        self.estimator.load_state_dict(state["estimator"])
        set_rng_state(state["rng"])
        self.policy.generator.set_state(state["gen_rng"])
        v, inner, gauss = state["collector_rng"]
        self.collector.rng.setstate((v, tuple(inner), gauss))
        self.collector.games_started = int(state["games_started"])
        for env_id, st in state.get("opponent_rng", {}).items():
            v, inner, gauss = st
            self.collector.opponents[env_id].rng.setstate((v, tuple(inner), gauss))
        for env_id, st in state.get("opponent_gen_rng", {}).items():  # a frozen checkpoint's sampler
            self.collector.opponents[env_id].policy.generator.set_state(st)
        if self.remote is not None:
            self.remote.set_state(state.get("workers"), self.step)
        if state.get("magnet") is not None:
            ref, self.magnet = move_magnet(self.run.path, self.model, self.tokenizer, state["magnet"])
            self.learner.set_reference(ref, state["magnet"])  # the moving magnet of the checkpoint

    # ---- checkpoints ----------------------------------------------------------------------------
    def save(self) -> Path:
        """Write the checkpoint of the current step atomically and prune old ones."""
        py = self.collector.rng.getstate()
        state = {
            "step": self.step,
            "train_seconds": self.train_seconds,
            "warmup_done": self.warmup_done,
            "learner": self.learner.state_dict(),
            "estimator": self.estimator.state_dict(),
            "rng": get_rng_state(),
            "gen_rng": self.policy.generator.get_state(),
            "collector_rng": [py[0], list(py[1]), py[2]],
            "games_started": self.collector.games_started,
            "opponent_rng": _opponent_rngs(self.collector.opponents),
            "opponent_gen_rng": _opponent_gen_rngs(self.collector.opponents),
            "settings": self.s.to_dict(),
        }
        if self.remote is not None:
            state["workers"] = self.remote.get_state()
        if is_peft(self.model):
            state["adapters"] = {n: p.detach() for n, p in self.model.named_parameters() if p.requires_grad}
            if self.magnet is not None:
                state["magnet"] = self.magnet

        def write_model(tmp: Path) -> None:
            model = plain_copy(self.model, torch.float32) if is_peft(self.model) else self.model
            model.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)

        path = save_checkpoint(
            self.run.checkpoints / checkpoint_name(self.step), state, write_extra=write_model
        )
        if self.s.run.keep_checkpoints:
            prune_checkpoints(self.run.checkpoints, self.s.run.keep_checkpoints)
        return path

    # ---- evaluation -----------------------------------------------------------------------------
    def evaluate(self, phase: str | None = None) -> dict[str, float]:
        """Win rates against each fixed opponent in both seats; writes eval/<phase>/ files for phases.

        Evaluation leaves every random stream of training as it found it (the sampler's, the global ones), so
        a run's training steps do not depend on when it evaluated (and a resumed run equals an uninterrupted
        one whatever the evaluation schedule)."""
        gen_state, rng_state = self.policy.generator.get_state(), get_rng_state()
        try:
            return self._evaluate(phase)
        finally:
            self.policy.generator.set_state(gen_state)
            set_rng_state(rng_state)

    def _evaluate(self, phase: str | None) -> dict[str, float]:
        from spiral.agents import make_agent
        from spiral.evaluation.games import metric_rows, pick_transcripts, play_games, summarize_games

        e, r = self.s.eval, self.s.rollout
        agent = LMAgent(self.policy, Sampling(e.temperature, e.top_p, r.max_new_tokens), name="policy")
        parse = e.parse_mode or r.parse_mode
        summary, results, extra = {}, [], {}
        seed = self.s.run.seed + 10_000  # the same deals at every evaluation
        for env_id in r.env_ids:
            for spec in e.opponents:
                try:
                    opp = make_agent(spec, env_id, seed=seed)
                except UserError:
                    continue  # this opponent does not play this game (e.g. optimal for a test game)
                kw = {**r.env_kwargs.get(env_id, {}), "parse_mode": parse, "invalid_penalty": EVAL_PENALTY}
                rs = play_games(
                    agent, opp, env_id, 2 * e.games, seed, spec, e.num_envs or r.num_envs, env_kwargs=kw
                )
                s = summarize_games(rs)
                summary[f"{env_id} vs {spec}"] = s
                results += rs
                for seat in ("seat0", "seat1"):
                    extra[f"eval/{env_id}/{spec}/{seat}_win_rate"] = s[seat]["win_rate"]
                extra[f"eval/{env_id}/{spec}/mean_reward"] = s["all"]["mean_reward"]
        out = {**metric_rows(summary), **extra}
        folder = self.run.path / "eval" / PHASES[phase] if phase else None
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_json(folder / "summary.json", {"kind": "games", "n": 2 * e.games, "seed": seed,
                                                        "step": self.step, "results": summary})  # fmt: skip
        tdir = self.run.path / "transcripts"
        tdir.mkdir(exist_ok=True)
        picked = "".join(json.dumps(asdict(g)) + "\n" for g in pick_transcripts(results, 1))
        atomic_write_text(tdir / f"eval_step_{self.step:06d}.jsonl", picked)
        return out

    # ---- the loop -------------------------------------------------------------------------------
    def train(self) -> dict[str, float]:
        """Run warm-up (if due) and self-play to `run.steps`; return the last step's metrics."""
        s = self.s
        if not self.warmup_done:
            self._warmup()
        if self.step == 0 and self.run.latest_checkpoint() is None:
            if s.learner.kl_coef > 0 and s.learner.kl_ref == "start":
                self.learner.set_reference(save_reference(self.run.path, self.model, self.tokenizer))
            first = self.evaluate("warmup" if s.warmup.rounds else "base") if s.eval.at_start else {}
            if s.eval.exploitability_every:
                first.update(self.readout())
            if first:
                self.metrics.log(0, first)
            self.save()
        self._load_readouts()
        last: dict[str, float] = {}
        if self.remote is not None:  # the workers start from the learner's weights (after warm-up, resume)
            self.remote.sync(self.model, self.step)
        with ProgressBar(s.run.steps, "self-play", completed=self.step, every=1) as bar:
            while self.step < s.run.steps:
                last = self.train_step()
                self.step += 1
                self.train_seconds += last["time/step_seconds"]
                last["time/train_minutes"] = self.train_seconds / 60
                left = 60 * s.run.max_minutes - self.train_seconds  # a next step as long as this one must fit
                out_of_time = bool(s.run.max_minutes) and left < last["time/step_seconds"]
                done = self.step == s.run.steps or out_of_time
                if out_of_time and self.step < s.run.steps:
                    self.log(f"run.max_minutes={s.run.max_minutes:g}: another step would not fit after step "
                             f"{self.step} ({self.train_seconds / 60:.1f} min): finishing")  # fmt: skip
                if s.eval.every and self.step % s.eval.every == 0 or done:
                    last.update(self.evaluate("final" if done else None))
                k = s.eval.exploitability_every
                if k and (self.step % k == 0 or done):
                    last.update(self.readout())
                if s.rollout.pool_size and self.step % s.rollout.pool_every == 0:
                    self._snapshot()
                self.metrics.log(self.step, last)
                if self.step % s.run.save_every == 0 or done:
                    self.save()
                bar.update(1, _headline(last))
                if done:
                    break
        if self.remote is not None:
            self.remote.close()
        if self.world.size > 1:
            self.learner.close()  # the other learner ranks stop
        self.metrics.close()
        if s.run.plots:
            self.finish_report()
        return last

    # ---- exact readout, reference, opponent pool ----------------------------------------------------
    def readout(self) -> dict[str, float]:
        """One-round KuhnPoker-v2 runs: the policy readout and its exploitability (spiral.training.readouts)."""
        if not kuhn_one_round(self.s):
            return {}
        from spiral.training.readouts import take_readout

        metrics, self.readouts = take_readout(self.s, self.policy, self.model, self.step, self.readouts,
                                              self.run.path / "eval")  # fmt: skip
        return metrics

    def _load_readouts(self) -> None:
        path = self.run.path / "eval" / "exploitability.jsonl"
        if not self.readouts and path.is_file():
            rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
            self.readouts = [x for x in rows if x["step"] <= self.step]

    def _snapshot(self) -> None:
        """Add the current policy to the opponent pool (oldest out beyond rollout.pool_size)."""
        from spiral.agents.lm import ConstrainedPolicy

        frozen = plain_copy(
            self.model, torch.bfloat16 if factories.learner_dtype(self.s) == "bf16" else torch.float32
        )
        if isinstance(self.policy, ConstrainedPolicy):
            pol = ConstrainedPolicy(self.tokenizer, frozen, self.policy.format, factories.learner_dtype(self.s),
                                    self.s.run.seed + 7 + self.step)  # fmt: skip
        else:
            pol = make_policy(self.s, frozen, self.tokenizer, self.s.run.seed + 7 + self.step)
        self.pool = [*self.pool, LMAgent(pol, self.sampling, name=f"pool:{self.step}")][
            -self.s.rollout.pool_size :
        ]

    def _pool_opponent(self):
        """A pool member for the next game with probability rollout.pool_prob, else None (self-play)."""
        if self.rated is not None:  # the collector has just counted the game it asks for
            return self.rated.draw(self.pool, self.collector.games_started - 1)
        if not self.pool or self.collector.rng.random() >= self.s.rollout.pool_prob:
            return None
        return self.pool[self.collector.rng.randrange(len(self.pool))]

    def _warmup(self) -> None:
        from spiral.training.warmup import run_warmup

        if self.s.eval.at_start:
            self.metrics.log(0, {f"base/{k}": v for k, v in self.evaluate("base").items()})
        stats = run_warmup(self.model, self.policy, self.collector, self.s, log=self.log)
        if self.world.size > 1:
            self.learner.sync_weights()  # the warm-up ran on rank 0 only
        self.metrics.log(0, stats)
        self.warmup_done = True

    def train_step(self) -> dict[str, float]:
        """One step: collect turns, assign advantages, update, sync the generator."""
        t0 = time.perf_counter()
        try:
            rollout = (self.remote or self.collector).collect(self.s.rollout.turns_per_step)
        except (RuntimeError, MemoryError) as e:
            if not _is_oom(e):
                raise
            r = self.s.rollout
            raise UserError(
                f"out of memory while generating; lower rollout.gen_batch_size (now {r.gen_batch_size}) or "
                f"rollout.max_new_tokens (now {r.max_new_tokens})"
            ) from None
        self.estimator.assign(rollout.games)
        pool_stats = self.rated.record(rollout.games) if self.rated is not None else {}
        batch = drop_zero(rollout.turns, self.s.rollout.format_bonus, self.s.learner.train_zero_advantage)
        t1 = time.perf_counter()
        metrics = {**rollout.stats, **pool_stats}
        metrics.update(self.learner.update(batch, self.step))
        if self.s.learner.update:
            self.policy.generator.load_weights(self.model)
        if self.remote is not None:  # weights of version step + 1 to every worker (one ray.put)
            self.remote.sync(self.model, self.step + 1)
        every = self.s.learner.kl_ref_every
        if every and self.s.learner.kl_coef > 0 and (self.step + 1) % every == 0:
            ref, self.magnet = move_magnet(self.run.path, self.model, self.tokenizer)  # in the step's time
            self.learner.set_reference(ref)
        n = max(len(rollout.turns), 1)
        metrics.update({
            "rollout/adv_mean": sum(t.advantage for t in rollout.turns) / n,
            "rollout/zero_adv_frac": sum(t.advantage == 0.0 for t in rollout.turns) / n,
            "train/seconds": time.perf_counter() - t1,
            "time/step_seconds": time.perf_counter() - t0,
        })  # fmt: skip
        metrics.update({f"rae/{k}": v for k, v in self.estimator.baselines.items() if "#" not in k})
        self._save_samples(rollout.turns[:4])
        return metrics

    def _save_samples(self, turns: list) -> None:
        """A few of this step's turns as a transcript line (the report shows them)."""
        tdir = self.run.path / "transcripts"
        tdir.mkdir(exist_ok=True)
        rows = [{"env_id": t.env_id, "step": self.step + 1, "outcome": _outcome(t.final_return),
                 "turns": [{"player": t.role, "agent": "policy", "observation": self.tokenizer.decode(t.prompt_ids),
                            "response": t.response_text, "invalid": t.invalid}]} for t in turns]  # fmt: skip
        append_text(tdir / "selfplay.jsonl", "".join(json.dumps(r) + "\n" for r in rows))

    def finish_report(self) -> None:
        """Plots of the run, phases.json (what warm-up and self-play each did) and the HTML report."""
        from spiral.plots import plot_run

        plot_run(self.run.path)
        atomic_write_json(self.run.path / "phases.json", phase_summary(self.run.path))
        try:
            from spiral.report import build_report

            build_report(self.run.path)
        except ImportError:
            pass


def _opponent_rngs(opponents: dict | None) -> dict[str, list]:
    """Python RNG states of fixed opponents that keep one (random, nash), for an exact resume."""
    out = {}
    for env_id, agent in (opponents or {}).items():
        rng = getattr(agent, "rng", None)
        if isinstance(rng, random.Random):
            v, inner, gauss = rng.getstate()
            out[env_id] = [v, list(inner), gauss]
    return out


def _opponent_gen_rngs(opponents: dict | None) -> dict[str, torch.Tensor]:
    """Sampling RNG states of language-model opponents (a frozen checkpoint), for an exact resume."""
    out = {}
    for env_id, agent in (opponents or {}).items():
        generator = getattr(getattr(agent, "policy", None), "generator", None)
        if generator is not None:
            out[env_id] = generator.get_state()
    return out


def _outcome(ret: float) -> str:
    return "win" if ret > 0 else "loss" if ret < 0 else "draw"


def _headline(m: dict[str, float]) -> dict[str, float]:
    """The few metrics shown beside the progress bar, under short names."""
    names = {"train/loss": "loss", "rollout/invalid_rate": "invalid", "rollout/return_mean": "return",
             "rollout/response_tokens": "tokens", "time/step_seconds": "s_per_step"}  # fmt: skip
    out = {short: m[k] for k, short in names.items() if k in m}
    for k, v in m.items():
        parts = k.split("/")
        if len(parts) == 4 and parts[0] == "eval" and parts[3] == "win_rate":
            out[f"win[{parts[1]}|{parts[2]}]"] = v
    return out

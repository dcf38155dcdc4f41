"""The training loop: AdamW with warm-up, EMA weights, grad clipping, exact resume, DDP under torchrun (gloo)."""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from runkit.checkpoint import (
    checkpoint_name,
    load_checkpoint,
    load_into,
    prune_checkpoints,
    require_state,
    save_checkpoint,
)
from runkit.distributed import World, init_world
from runkit.errors import UserError
from runkit.io import atomic_write_json
from runkit.metrics import MetricsLogger
from runkit.progress import ProgressBar
from runkit.rundir import RunDir
from runkit.seeding import get_rng_state, seed_everything
from transition_matching.config import TrainConfig
from transition_matching.data import Dataset, load_data
from transition_matching.model import build


@dataclass
class TrainResult:
    """Where the run stopped and how long this call took."""

    step: int
    loss: float
    seconds: float  # training wall time of this call, without the time spent in on_evaluate
    eval_seconds: float = 0.0  # time spent in on_evaluate


def load_training_data(cfg: TrainConfig) -> Dataset:
    """The training data a config names."""
    return load_data(cfg.data, cfg.patch or None, cfg.n_points, cfg.seed, cfg.scaling)


def step_seed(seed: int, step: int, chunk: int) -> int:
    """A seed for the randomness of (step, micro-batch chunk): resume and DDP need no RNG bookkeeping."""
    return (seed * 1_000_003 + step) * 4099 + chunk + 1


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Constant learning rate after a linear warm-up."""
    return cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model."""
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p, 1.0 - decay)


def _all_reduce_grads(model: nn.Module, world: World) -> None:
    if world.size == 1:
        return
    for p in model.parameters():
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad)  # the loss was already divided by the number of chunks over all ranks


class _Silent:
    """A progress bar that shows nothing (other ranks, tests, demo workers)."""

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def update(self, advance: int = 1, metrics: dict | None = None) -> None:
        return None


def replica_difference(model: nn.Module) -> float:
    """Largest absolute difference between this rank's parameters and rank 0's, over all ranks."""
    worst = torch.zeros(())
    for p in model.parameters():
        ref = p.detach().clone()
        dist.broadcast(ref, src=0)
        worst = torch.maximum(worst, (p.detach() - ref).abs().max())
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    return float(worst)


def _state(step: int, model: nn.Module, ema: nn.Module, opt: torch.optim.Optimizer) -> dict:
    return {
        "step": step,
        "model": model.state_dict(),
        "ema": ema.state_dict(),
        "optim": opt.state_dict(),
        "rng": get_rng_state(),
    }


@dataclass
class StepStats:
    """Loss averaged over the global batch and the gradient norm before clipping."""

    loss: float
    grad_norm: float


def _train_step(cfg, method, model, data: Dataset, step: int, world: World) -> StepStats:
    """Forward/backward over this rank's micro-batches of the global batch, then all-reduce and clip."""
    chunks = world.size * cfg.accum
    if cfg.batch_size % chunks:
        raise UserError(f"--batch-size {cfg.batch_size} must divide into {chunks} processes x micro-batches")
    g = torch.Generator().manual_seed(step_seed(cfg.seed, step, -1))
    idx = torch.randint(0, data.X.shape[0], (cfg.batch_size,), generator=g).chunk(chunks)
    total = 0.0
    for j in range(cfg.accum):
        c = world.rank * cfg.accum + j
        gen = torch.Generator().manual_seed(step_seed(cfg.seed, step, c))
        labels = None if data.labels is None else data.labels[idx[c]]
        out = method.loss(model, data.X[idx[c]], labels, gen)
        (out.loss / chunks).backward()
        total += out.loss.item() / chunks
    _all_reduce_grads(model, world)
    norm = nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
    if world.size > 1:
        t = torch.tensor([total])
        dist.all_reduce(t)
        total = t.item()
    return StepStats(total, float(norm))


@dataclass
class Trainee:
    """What training changes: the method's network, its EMA copy and the optimizer."""

    method: object
    model: nn.Module
    ema: nn.Module
    opt: torch.optim.Optimizer


def _setup(cfg: TrainConfig, data: Dataset) -> Trainee:
    seed_everything(cfg.seed)
    method, model = build(cfg, data.n_tokens, data.token_dim, data.num_classes)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return Trainee(method, model, ema, opt)


def _restore(t: Trainee, run: RunDir) -> int:
    """Load the newest checkpoint of `run` into t; returns its step (0 without one)."""
    latest = run.latest_checkpoint()
    if latest is None:
        return 0
    ckpt = load_checkpoint(latest[1])
    state = require_state(ckpt, model=dict, ema=dict, optim=dict, step=int)
    load_into(t.model, state["model"], ckpt.path, "model")
    load_into(t.ema, state["ema"], ckpt.path, "EMA model")
    load_into(t.opt, state["optim"], ckpt.path, "optimizer")
    return state["step"]


def _one_step(cfg: TrainConfig, t: Trainee, data: Dataset, step: int, world: World) -> StepStats:
    for group in t.opt.param_groups:
        group["lr"] = lr_at(cfg, step)
    t.opt.zero_grad(set_to_none=True)
    stats = _train_step(cfg, t.method, t.model, data, step, world)
    t.opt.step()
    update_ema(t.ema, t.model, min(cfg.ema, (1 + step) / (10 + step)))  # EMA warm-up: short runs track
    return stats


def train(
    cfg: TrainConfig,
    run: RunDir,
    resume: bool = False,
    stop_at: int | None = None,
    progress: bool = True,
    data: Dataset | None = None,
    evaluate_every: int = 0,
    on_evaluate: Callable[[int, object, nn.Module], None] | None = None,
) -> TrainResult:
    """Train (or resume) the run in `run` up to cfg.steps, or stop early after `stop_at` steps.

    With on_evaluate, on_evaluate(step, method, ema_model) runs (under no_grad) after every `evaluate_every`
    steps and after the last one, e.g. for quality-vs-steps curves; it must not change the EMA model. Training
    draws its randomness from per-step generators, so the evaluations do not change the run."""
    world = init_world()
    torch.set_num_threads(max(1, cfg.threads))
    data = data if data is not None else load_training_data(cfg)
    t = _setup(cfg, data)
    start = _restore(t, run) if resume else 0
    end = min(cfg.steps, stop_at) if stop_at is not None else cfg.steps
    logger = MetricsLogger(run.path, resume_step=start if resume else None) if world.main else None
    bar_cm = _Silent()
    if progress and world.main:
        bar_cm = ProgressBar(cfg.steps, f"tm {cfg.method} {cfg.data}", start, every=max(10, cfg.steps // 10))
    t0, t_log, window, loss, eval_s = time.time(), time.time(), [], float("nan"), 0.0
    with bar_cm as bar:
        for step in range(start, end):
            stats = _one_step(cfg, t, data, step, world)
            loss, done = stats.loss, step + 1
            window.append(loss)
            if logger is not None and (done % cfg.log_every == 0 or done == end):
                rate = len(window) / max(time.time() - t_log, 1e-9)
                logger.log(done, {"train/loss": sum(window) / len(window), "train/grad_norm": stats.grad_norm,
                                  "train/lr": lr_at(cfg, step), "train/steps_per_s": rate})  # fmt: skip
                window, t_log = [], time.time()
            if world.main and (done % cfg.ckpt_every == 0 or done == end):
                save_checkpoint(run.checkpoints / checkpoint_name(done), _state(done, t.model, t.ema, t.opt))
                prune_checkpoints(run.checkpoints, cfg.keep_ckpts)
            if on_evaluate is not None and evaluate_every > 0 and (done % evaluate_every == 0 or done == end):
                t_eval = time.time()
                with torch.no_grad():
                    on_evaluate(done, t.method, t.ema)
                eval_s += time.time() - t_eval
            bar.update(1, {"loss": loss})
    if logger is not None:
        logger.close()
    if world.size > 1:
        _check_replicas(t.model, run, world)
    return TrainResult(
        step=max(start, end), loss=loss, seconds=time.time() - t0 - eval_s, eval_seconds=eval_s
    )


def step_runner(cfg: TrainConfig, data: Dataset):
    """A function that runs the next optimizer step of a fresh model of cfg on data (to time a step); its
    `model` attribute is the network it trains."""
    t, step = _setup(cfg, data), [0]

    def run_one() -> None:
        _one_step(cfg, t, data, step[0], World())
        step[0] += 1

    run_one.model = t.model
    return run_one


def _check_replicas(model: nn.Module, run: RunDir, world: World) -> None:
    """Record in ddp.json how far the replicas drifted apart (0 when DDP works)."""
    diff = replica_difference(model)
    if world.main:
        atomic_write_json(run.path / "ddp.json", {"world_size": world.size, "replica_max_abs_diff": diff})
    dist.barrier()


def config_dict(cfg: TrainConfig) -> dict:
    """The config as written into the run folder."""
    return dataclasses.asdict(cfg)

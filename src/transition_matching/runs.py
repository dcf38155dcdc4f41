"""Open a trained run and draw samples from it: the API behind `tm sample / eval / plot` and the benchmarks."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from runkit.checkpoint import load_checkpoint
from runkit.errors import CheckpointError, UserError
from runkit.rundir import RunDir, open_run_dir
from transition_matching.config import TrainConfig, config_from_dict
from transition_matching.data import Dataset
from transition_matching.methods import SampleOptions, TMModel
from transition_matching.model import build, default_steps
from transition_matching.trainer import load_training_data


@dataclass
class LoadedRun:
    """A run folder with its config, data, method and network (EMA weights unless asked otherwise)."""

    run: RunDir
    config: TrainConfig
    data: Dataset
    method: object
    model: TMModel
    step: int


@dataclass
class Samples:
    """Samples of one call: tokens, raw data (points (N, D) or images (N, H, W, C)), counts and time."""

    tokens: Tensor  # (N, n, d)
    raw: np.ndarray
    labels: Tensor | None
    backbone_evals: int  # per batch: independent of the number of samples
    head_evals: int
    seconds: float
    trajectory: Tensor | None = None  # (steps + 1, N, n, d)


def load_run(path: str | Path, method: str | None = None, ema: bool = True) -> LoadedRun:
    """Open a `tm` run folder and load its newest checkpoint; `method` guards against another method's run."""
    run = open_run_dir(path, kind="tm")
    cfg = config_from_dict(run.read_config())
    if method is not None and cfg.method != method:
        raise UserError(f"{run.path} is a {cfg.method!r} run, not a {method!r} run")
    latest = run.latest_checkpoint()
    if latest is None:
        raise UserError(f"{run.path} has no checkpoint yet; train it first with `tm train`")
    data = load_training_data(cfg)
    meth, model = build(cfg, data.n_tokens, data.token_dim, data.num_classes)
    state = load_checkpoint(latest[1]).state
    try:
        model.load_state_dict(state["ema" if ema else "model"])
    except (KeyError, RuntimeError) as e:
        raise CheckpointError(
            f"{latest[1]} does not fit the network of {run.config}: {str(e)[:200]}"
        ) from None
    model.eval()
    return LoadedRun(run, cfg, data, meth, model, latest[0])


def sample_options(
    loaded: LoadedRun, steps: int | None = None, head_steps: int | None = None, cfg: float = 1.0, **kw
) -> SampleOptions:
    """SampleOptions with the run's defaults for anything not given."""
    opts = SampleOptions(
        steps=default_steps(loaded.config) if steps is None else steps,
        head_steps=loaded.config.sample_head_steps if head_steps is None else head_steps,
        cfg=cfg,
        **kw,
    )
    opts.check()
    return opts


def default_labels(loaded: LoadedRun, n: int, label: int | None = None) -> Tensor | None:
    """Labels for n conditional samples: all `label`, or classes in turn; None for unlabelled data."""
    k = loaded.data.num_classes
    if k == 0:
        if label is not None:
            raise UserError(f"{loaded.config.data} has no classes; drop --class")
        return None
    if label is not None and not 0 <= label < k:
        raise UserError(f"--class must be in 0..{k - 1}, got {label}")
    return torch.full((n,), label) if label is not None else torch.arange(n) % k


def draw_samples(
    loaded: LoadedRun,
    n: int,
    opts: SampleOptions,
    labels: Tensor | None = None,
    seed: int = 0,
    batch: int = 1000,
) -> Samples:
    """Draw n samples in batches of `batch`; counts are those of one batch, seconds the total wall time."""
    if n < 1:
        raise UserError(f"--n must be >= 1, got {n}")
    g = torch.Generator().manual_seed(seed)
    shape = (loaded.data.n_tokens, loaded.data.token_dim)
    parts, trajs, counts = [], [], (0, 0)
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        m = min(batch, n - start)
        lab = None if labels is None else labels[start : start + m]
        res = loaded.method.sample(loaded.model, (m, *shape), lab, opts, g)
        parts.append(res.X)
        counts = (res.backbone_evals, res.head_evals)
        if res.trajectory is not None:
            trajs.append(res.trajectory)
    seconds = time.perf_counter() - t0
    tokens = torch.cat(parts)
    traj = torch.cat(trajs, dim=1) if trajs else None
    return Samples(tokens, loaded.data.to_raw(tokens), labels, counts[0], counts[1], seconds, traj)

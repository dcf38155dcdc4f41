"""`tm train`: train FM / DTM / ARTM / FHTM on a data set into a run folder (presets, resume, --nproc)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

RESUME_OVERRIDES = ("steps", "ckpt_every", "keep_ckpts", "log_every", "threads")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from transition_matching.config import add_config_arguments

    parser.add_argument(
        "--preset",
        help="a preset name under configs/tm/ (e.g. dtm-2d) or a path to any .toml file (read wherever it is)",
    )
    parser.add_argument("--out", help="run folder [runs/tm/METHOD-DATA]")
    parser.add_argument(
        "--force",
        action="store_true",
        help="write the run into a non-empty --out folder that is not a tm run",
    )
    parser.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its newest checkpoint")
    parser.add_argument("--nproc", type=int, default=1, help="processes (DDP with gloo via torchrun) [1]")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_arguments(parser)


def config_overrides(args: argparse.Namespace) -> dict:
    from transition_matching.config import field_help

    return {k: getattr(args, k) for k in field_help() if getattr(args, k) is not None}


def _argv(args: argparse.Namespace) -> list[str]:
    """The `tm train` arguments of this call, for the processes torchrun starts."""
    out = ["train"]
    for name in ("preset", "out", "resume"):
        if getattr(args, name):
            out += [f"--{name}", str(getattr(args, name))]
    if args.no_progress:
        out.append("--no-progress")
    if args.force:
        out.append("--force")
    for k, v in config_overrides(args).items():
        out += [f"--{k.replace('_', '-')}", str(v)]
    return out


def _launch(args: argparse.Namespace) -> int:
    """Re-run this command under torchrun with --nproc processes (gloo on CPU)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}"]
    return subprocess.call([*cmd, "-m", "transition_matching.cli", *_argv(args)])


def _resume_config(args: argparse.Namespace, overrides: dict):
    import dataclasses

    from runkit.errors import UserError
    from runkit.rundir import open_run_dir
    from transition_matching.config import config_from_dict

    run = open_run_dir(args.resume, kind="tm")
    cfg = config_from_dict(run.read_config())
    for k, v in overrides.items():
        if k not in RESUME_OVERRIDES and v != getattr(cfg, k):
            raise UserError(
                f"{run.path} is a run with {k}={getattr(cfg, k)!r}; it cannot resume with {k}={v!r}"
            )
    cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if k in RESUME_OVERRIDES})
    return run, cfg


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from runkit.errors import UserError
    from runkit.io import atomic_write_json
    from runkit.rundir import RunDir, create_run_dir
    from transition_matching.config import make_config, resolve
    from transition_matching.trainer import config_dict, load_training_data, train

    if args.nproc < 1:
        raise UserError(f"--nproc must be >= 1, got {args.nproc}")
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _launch(args)
    main = int(os.environ.get("RANK", "0")) == 0
    overrides = config_overrides(args)
    if args.resume:
        run_dir, cfg = _resume_config(args, overrides)
        if main:
            atomic_write_json(run_dir.config, {"kind": "tm", **config_dict(cfg)})
        data = load_training_data(cfg)
    else:
        cfg = make_config(args.preset, **overrides)
        data = load_training_data(cfg)
        cfg = resolve(cfg, data.n_tokens)
        out = Path(args.out or f"runs/tm/{cfg.method}-{Path(cfg.data).stem}")
        run_dir = create_run_dir(out, config_dict(cfg), kind="tm", force=args.force) if main else RunDir(out)
    if main:  # the regime: how a backbone pass compares with a head step (the paper's needs >= 20x)
        from transition_matching.cost import config_pass_cost

        torch.set_num_threads(max(1, cfg.threads))
        print(config_pass_cost(cfg, data, repeats=3).describe(), flush=True)
    result = train(cfg, run_dir, resume=bool(args.resume), progress=not args.no_progress, data=data)
    if main:
        print(f"trained {cfg.method} on {cfg.data} to step {result.step} in {result.seconds:.1f} s "
              f"(last loss {result.loss:.4f}); run folder: {run_dir.path}")  # fmt: skip
    return 0

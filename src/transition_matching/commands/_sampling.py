"""Arguments shared by `tm sample`, `tm eval` and `tm plot`."""

from __future__ import annotations

import argparse
from pathlib import Path

MAX_SAMPLES = 1_000_000  # drawn in one batch: 10^6 MNIST samples are ~3 GB


def add_sampling_arguments(parser: argparse.ArgumentParser, n: int) -> None:
    """--run, --n, --steps, --head-steps, --cfg, solvers, --seed, --method guard."""
    parser.add_argument("--run", required=True, help="a run folder written by `tm train`")
    parser.add_argument("--n", type=int, default=n, help=f"number of samples [{n}]")
    parser.add_argument("--steps", type=int, help="TM steps T (FM: ODE steps) [run default]")
    parser.add_argument("--head-steps", type=int, help="head ODE steps per transition [run default]")
    parser.add_argument("--cfg", type=float, default=1.0, help="classifier-free guidance scale [1.0 = off]")
    parser.add_argument(
        "--solver", default="euler", help="FM solver: euler, midpoint or sde[:ETA] (stochastic) [euler]"
    )
    parser.add_argument(
        "--head-solver", default="euler", help="head solver: euler, midpoint or sde[:ETA] [euler]"
    )
    parser.add_argument("--seed", type=int, default=0, help="sampling seed [0]")
    parser.add_argument("--method", help="fail unless the run was trained with this method")
    parser.add_argument("--raw-weights", action="store_true", help="use the raw weights instead of the EMA")


def open_for_sampling(args: argparse.Namespace):
    """(LoadedRun, SampleOptions) from the shared arguments."""
    import torch

    from runkit.errors import UserError
    from transition_matching.runs import load_run, sample_options

    if not 1 <= args.n <= MAX_SAMPLES:
        raise UserError(f"--n must be between 1 and {MAX_SAMPLES:,}, got {args.n:,}")
    out = getattr(args, "out", None)
    if out is not None and Path(out).is_dir():
        raise UserError(f"--out {out} is a folder; name the .npz file to write")
    torch.set_num_threads(2)
    loaded = load_run(args.run, method=args.method, ema=not args.raw_weights)
    opts = sample_options(
        loaded, args.steps, args.head_steps, args.cfg, solver=args.solver, head_solver=args.head_solver
    )
    return loaded, opts

"""`spiral plot RUN_DIR`: draw the plots of a training run (invalid rate, win rates, length, loss, grad norm)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `spiral plot`."""
    parser.add_argument("run_dir", help="a `spiral train` run folder")
    parser.add_argument(
        "--summary",
        metavar="PNG",
        help="also draw one summary figure (rollout invalid rate, evaluated points with intervals) to PNG",
    )


def run(args: argparse.Namespace) -> int:
    """Write RUN_DIR/plots/*.png and print their paths."""
    from runkit.errors import UserError
    from spiral.plots import plot_run

    paths = plot_run(args.run_dir)
    if not paths:
        raise UserError(f"{args.run_dir}/metrics.jsonl holds no plottable metrics yet")
    print("\n".join(str(p) for p in paths))
    if args.summary:
        from spiral.plots import plot_summary

        print(plot_summary(args.run_dir, args.summary))
    return 0

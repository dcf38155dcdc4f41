"""`tm plot`: 2D scatter and density, image grids per class, trajectories X_0 -> X_T; refreshes report.html."""

from __future__ import annotations

import argparse

from transition_matching.commands._sampling import add_sampling_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_sampling_arguments(parser, n=2000)


def run(args: argparse.Namespace) -> int:
    from transition_matching.commands._sampling import open_for_sampling
    from transition_matching.report import make_plots, write_run_report

    loaded, opts = open_for_sampling(args)
    paths = make_plots(loaded, opts, args.n, args.seed)
    report = write_run_report(loaded)
    print(f"wrote {len(paths)} plots to {loaded.run.plots} and {report}")
    return 0

"""`tm eval`: sample a trained run and measure W2, sliced W2, energy, MMD, memorisation and classifier metrics."""

from __future__ import annotations

import argparse

from transition_matching.commands._sampling import add_sampling_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_sampling_arguments(parser, n=2000)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def run(args: argparse.Namespace) -> int:
    import json

    from transition_matching.commands._sampling import open_for_sampling
    from transition_matching.evaluation import evaluate, write_eval
    from transition_matching.report import write_run_report

    loaded, opts = open_for_sampling(args)
    results = evaluate(loaded, args.n, opts, args.seed)
    write_eval(loaded, results)
    write_run_report(loaded)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for k, v in results.items():
            print(f"{k:>18}: {v:.4g}" if isinstance(v, float) else f"{k:>18}: {v}")
    return 0

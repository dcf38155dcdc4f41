"""`spiral report RUN_DIR`: write one self-contained HTML page for a training run."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `spiral report`."""
    parser.add_argument("run_dir", help="a training run folder (config.json, metrics.jsonl, plots/, eval/)")
    parser.add_argument("--out", help="output HTML file (default RUN_DIR/report.html)")
    parser.add_argument("--transcripts", type=int, default=2, help="games shown per outcome (wins, losses)")
    parser.add_argument(
        "--markdown",
        metavar="PATH",
        help="also write the phase table (base / after warm-up / after self-play, Wilson intervals) as Markdown",
    )


def run(args: argparse.Namespace) -> int:
    """Build the report and print its path."""
    from spiral.report import build_report

    path = build_report(args.run_dir, args.out, args.transcripts)
    print(f"report: {path}")
    if args.markdown:
        from runkit.io import atomic_write_text
        from spiral.phases import phases_markdown

        atomic_write_text(args.markdown, phases_markdown(args.run_dir))
        print(f"phase table: {args.markdown}")
    return 0

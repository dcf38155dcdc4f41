"""The `spiral` command line."""

from __future__ import annotations

import sys

from runkit.cli import Command
from runkit.cli import main as _main
from runkit.errors import run_cli

COMMANDS = [
    Command("play", "spiral.commands.play", "play games between agents and print outcome statistics"),
    Command(
        "warmup", "spiral.commands.warmup", "format warm-up: rejection-sampled fine-tuning on valid moves"
    ),
    Command("train", "spiral.commands.train", "self-play RL training (RAE + PPO)"),
    Command("sft", "spiral.commands.sft", "supervised fine-tuning on expert moves (the SFT baseline)"),
    Command("eval", "spiral.commands.eval", "evaluate: exploitability, game win rates, reasoning benchmarks"),
    Command("plot", "spiral.commands.plot", "draw the plots of a run folder"),
    Command("report", "spiral.commands.report", "write a self-contained HTML report for a run folder"),
]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `spiral` console script. While the command runs, API agents may reach only the
    endpoints its command line or $SPIRAL_API_HOSTS names (spiral.agents.endpoints)."""
    from spiral.agents import endpoints

    words = list(sys.argv[1:] if argv is None else argv)
    rc = run_cli(lambda: endpoints.restrict(words), "spiral")
    if rc:
        return rc
    try:
        return _main(
            "spiral", "SPIRAL self-play RL for language models on zero-sum text games.", COMMANDS, argv
        )
    finally:
        endpoints.unrestricted()


if __name__ == "__main__":
    raise SystemExit(main())

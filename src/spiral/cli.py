"""The `spiral` command line."""

from __future__ import annotations

import argparse
import math
import sys

from runkit.cli import Command
from runkit.cli import main as _main
from runkit.errors import UserError, run_cli

DESCRIPTION = (
    "SPIRAL self-play RL for language models on zero-sum text games. Before or after the command: "
    "--api-move-seconds S bounds each move of an api: agent, every attempt and backoff included (default 180)."
)

DESCRIPTION = (
    "SPIRAL self-play RL for language models on zero-sum text games. Before or after the command: "
    "--api-move-seconds S bounds each move of an api: agent, every attempt and backoff included (default 180)."
)

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
    endpoints its command line or $SPIRAL_API_HOSTS names (spiral.agents.endpoints), and each of their moves
    has `--api-move-seconds` in all."""
    from spiral.agents import api_agent, endpoints

    words = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--api-move-seconds", type=float, default=None)
    known, rest = pre.parse_known_args(words)

    def setup() -> None:
        endpoints.restrict(words)
        if known.api_move_seconds is not None:
            if not math.isfinite(known.api_move_seconds) or known.api_move_seconds <= 0:
                raise UserError(f"--api-move-seconds must be a positive number, got {known.api_move_seconds}")
            api_agent.MOVE_SECONDS["default"] = known.api_move_seconds

    before = api_agent.MOVE_SECONDS["default"]
    try:
        return run_cli(setup, "spiral") or _main("spiral", DESCRIPTION, COMMANDS, rest)
    finally:
        endpoints.unrestricted()
        api_agent.MOVE_SECONDS["default"] = before


if __name__ == "__main__":
    raise SystemExit(main())

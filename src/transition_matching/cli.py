"""The `tm` command line."""

from __future__ import annotations

from runkit.cli import Command
from runkit.cli import main as _main

COMMANDS = [
    Command("train", "transition_matching.commands.train", "train FM / DTM / ARTM / FHTM on a data set"),
    Command("sample", "transition_matching.commands.sample", "draw samples from a trained run"),
    Command("eval", "transition_matching.commands.eval", "measure sample quality of a trained run"),
    Command("plot", "transition_matching.commands.plot", "draw scatter plots, image grids and trajectories"),
    Command(
        "cost", "transition_matching.commands.cost", "backbone pass vs head step cost per token (the regime)"
    ),
    Command("demo", "transition_matching.commands.demo", "a short DTM vs FM demo on 8 gaussians and digits"),
]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `tm` console script."""
    return _main("tm", "Transition Matching generative models (FM, DTM, ARTM, FHTM).", COMMANDS, argv)


if __name__ == "__main__":
    raise SystemExit(main())

"""`spiral eval WHAT`: a table of nested subcommands, each a module with add_arguments(parser) and run(args)."""

from __future__ import annotations

import argparse
import importlib
import importlib.util

# name -> (module, help). A module is imported only to fill its parser and when run; one that does not
# exist yet is skipped. To add a subcommand, add a row here.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "exploitability": (
        "spiral.evaluation.exploitability",
        "Kuhn Poker exploitability of a policy (OpenSpiel)",
    ),
    "games": ("spiral.evaluation.games", "win rates of a model against fixed opponents, both seats"),
    "reasoning": ("spiral.evaluation.reasoning", "accuracy on an offline reasoning suite (resumable)"),
    "compare": ("spiral.evaluation.compare", "paired per-item comparison of two reasoning evaluations"),
    "patterns": (
        "spiral.evaluation.patterns_cli",
        "reasoning patterns in think-mode thoughts (rule tagger or judge)",
    ),
    "league": (
        "spiral.evaluation.league.cli",
        "rated round-robin or budgeted league among checkpoints and agents",
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the nested subcommands whose modules exist."""
    sub = parser.add_subparsers(dest="eval_command", metavar="WHAT", title="evaluations")
    for name, (module, help_text) in SUBCOMMANDS.items():
        if importlib.util.find_spec(module) is None:
            continue
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_eval_module=module)
        importlib.import_module(module).add_arguments(p)
    parser.set_defaults(_eval_parser=parser)


def run(args: argparse.Namespace) -> int:
    """Run the chosen evaluation, or print the list of evaluations."""
    module = getattr(args, "_eval_module", None)
    if module is None:
        args._eval_parser.print_help()
        return 0
    return importlib.import_module(module).run(args)

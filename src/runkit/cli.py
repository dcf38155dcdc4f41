"""A small dispatcher: subcommands live in their own modules and are imported only when used."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
from dataclasses import dataclass

from runkit.errors import run_cli
from runkit.memory import keep_freed_memory


@dataclass(frozen=True)
class Command:
    """A subcommand: `module` defines add_arguments(parser) and run(args) -> int."""

    name: str
    module: str
    help: str


class OneLineParser(argparse.ArgumentParser):
    """argparse with the project's error convention: a bad option is one line on stderr and exit 2 (argparse
    prints the whole usage block first); `--help` still prints the full usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser(prog: str, description: str, commands: list[Command]) -> argparse.ArgumentParser:
    """Build the top-level parser; each subparser is filled by its module's add_arguments."""
    parser = OneLineParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for cmd in commands:
        if importlib.util.find_spec(cmd.module) is None:  # a command whose module is not built yet
            continue
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        p.set_defaults(_module=cmd.module)
        p.set_defaults(_parser=p)
        importlib.import_module(cmd.module).add_arguments(p)
    return parser


def main(prog: str, description: str, commands: list[Command], argv: list[str] | None = None) -> int:
    """Parse argv and run the chosen subcommand under the one-line error convention."""
    parser = build_parser(prog, description, commands)
    args = parser.parse_args(argv)
    if not getattr(args, "_module", None):
        parser.print_help()
        return 0
    module = importlib.import_module(args._module)
    keep_freed_memory()  # training steps reuse their activation memory instead of faulting it in anew
    return run_cli(lambda: module.run(args), prog)

"""A human at the terminal: sees the observation and the legal actions, types a move."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

from runkit.errors import UserError
from spiral.agents.base import Agent
from spiral.prompting import parse_action


class HumanAgent(Agent):
    """Reads one line per move; 'bet', '[bet]' or '4' are understood, free text with a [token] is passed on."""

    name = "human"

    def __init__(
        self, input_fn: Callable[[str], str] | None = None, out: TextIO | None = None, max_tries: int = 5
    ) -> None:
        self.input_fn = input_fn
        self.out = out
        self.max_tries = max_tries

    def _print(self, text: str) -> None:
        print(text, file=self.out or sys.stdout, flush=True)

    def act(self, observation: str, legal_actions: list[str], env=None) -> str:
        """Show the observation; ask until the line names a legal action (or a free-form [token])."""
        self._print("\n" + observation)
        if legal_actions and len(legal_actions) <= 20:
            self._print(f"Legal actions: {' '.join(legal_actions)}")
        for _ in range(self.max_tries):
            try:
                read = self.input_fn or input  # looked up per call, so a patched input() is honoured
                line = read("your move> ").strip()
            except EOFError:
                raise UserError("input ended before the game did") from None
            chosen = parse_action(line, legal_actions, mode="lenient")
            if chosen is not None:
                return chosen
            if "[" in line:  # free-form actions (negotiation offers) are judged by the game
                return line
            self._print("Not a legal action; type one of the actions listed above.")
        raise UserError(f"no legal action after {self.max_tries} tries")

"""SingleTokenGuess-v0: a one-turn test game whose answer is a single token; one option wins.

Player 0 names one of `options` (single characters such as A, B, C, D); naming `winner` wins (+1), any
other option loses (-1), anything else is an invalid move. Player 1 never moves. Every game is the same
state, so a policy that learns reaches a win rate near 1 while a frozen random one stays at chance (1/k).
It exists to test that the training machinery learns; it teaches no reasoning.
"""

from __future__ import annotations

from runkit.errors import UserError
from spiral.games.core import TextGame
from spiral.prompting import normalize_action, parse_action


class SingleTokenGuess(TextGame):
    """Guess the winning option in one token; the bare answer ('C') or a box (\\boxed{C}) both count."""

    env_id = "SingleTokenGuess-v0"
    game_name = "Single-Token Guess"
    max_turns = 1

    def __init__(self, options: str = "ABCD", winner: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        options = "".join(dict.fromkeys(str(options)))
        if len(options) < 2:
            raise UserError(f"SingleTokenGuess needs at least two distinct options, got {options!r}")
        winner = options[-2] if winner is None else str(winner)
        if winner not in options:
            raise UserError(f"SingleTokenGuess winner {winner!r} is not one of the options {options!r}")
        self.options, self.winner = options, winner
        self._legal = [f"[{o}]" for o in options]

    def new_game(self) -> None:
        """Nothing to deal: every game is the same single decision."""

    def legal_actions(self) -> list[str]:
        """One canonical action per option."""
        return list(self._legal)

    def match(self, action: str) -> str | None:
        """A bare option (case and brackets ignored) or whatever the parse mode accepts."""
        key = normalize_action(action)
        for legal in self._legal:
            if normalize_action(legal) == key:
                return legal
        return parse_action(action, self._legal, self.parse_mode)

    def apply(self, action: str) -> None:
        """Win when the option is the winner, else lose."""
        won = action == f"[{self.winner}]"
        self.finish(0 if won else 1, f"Player 0 guessed {action}: {'right' if won else 'wrong'}")

    def render(self, player: int) -> str:
        """The same question every game."""
        return f"Guess the secret letter. Options: {' '.join(self.options)}. Answer with one letter."

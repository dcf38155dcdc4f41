"""The environment interface, shaped like TextArena's: reset / get_observation / step / close."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass(frozen=True)
class InvalidPenalty:
    """Rewards when a player makes an invalid move: the game ends at once."""

    offender: float = -1.5
    opponent: float = 0.0


# Training: the innocent seat gets 0 (the paper's +0.5 rewarded its earlier, unrelated moves for the other
# seat's format errors; `invalid_penalty = [-1.5, 0.5]` restores it).
TRAIN_PENALTY = InvalidPenalty(-1.5, 0.0)
EVAL_PENALTY = InvalidPenalty(-1.0, 1.0)


class Env(ABC):
    """A two-player zero-sum text game. Pure Python: no torch, no tokens.

    Lifecycle: reset(num_players=2, seed=...) -> loop {player_id, obs = get_observation();
    done, info = step(action_text)} until done -> rewards, info = close().
    `info` after an invalid move holds {"invalid_move": True, "reason": "..."}.
    """

    env_id: str = ""
    num_players: int = 2

    @abstractmethod
    def reset(self, num_players: int = 2, seed: int | None = None) -> None:
        """Start a new game."""

    @abstractmethod
    def get_observation(self) -> tuple[int, str]:
        """The player to move and that player's own view of the game as plain text."""

    @abstractmethod
    def step(self, action: str) -> tuple[bool, dict]:
        """Apply the current player's action text (raw model output or a canonical action)."""

    @abstractmethod
    def close(self) -> tuple[dict[int, float], dict]:
        """Final rewards per player id and the game's info (outcome, reason, turns)."""

    @abstractmethod
    def legal_actions(self) -> list[str]:
        """Canonical action strings of the player to move, e.g. ['[bet]', '[check]']."""

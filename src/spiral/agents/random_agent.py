"""The uniformly random legal-move agent."""

from __future__ import annotations

import random

from spiral.agents.base import Agent


class RandomAgent(Agent):
    """Picks a legal action uniformly at random (an empty text when none is known)."""

    name = "random"

    def __init__(self, seed: int | None = None) -> None:
        self.rng = random.Random(seed)

    def act(self, observation: str, legal_actions: list[str], env=None) -> str:
        """A uniformly random legal action."""
        return self.rng.choice(legal_actions) if legal_actions else ""

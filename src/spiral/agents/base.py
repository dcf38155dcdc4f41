"""The agent interface shared by fixed opponents and the language-model policy."""

from __future__ import annotations

from abc import ABC, abstractmethod


class Agent(ABC):
    """Chooses an action text for the player to move.

    `act` sees the player's observation text and the legal canonical actions; it may also look at the
    env (fixed opponents that need exact state, such as minimax, read it through `env`). Batched agents
    (the LM policy) override `act_batch`.
    """

    name: str = "agent"

    @abstractmethod
    def act(self, observation: str, legal_actions: list[str], env=None) -> str:
        """Return an action text (a canonical action like '[bet]' or free text containing one)."""

    def act_batch(
        self, observations: list[str], legal: list[list[str]], envs: list | None = None
    ) -> list[str]:
        """Act for several games at once; the default loops over `act`."""
        envs = envs or [None] * len(observations)
        return [self.act(o, la, e) for o, la, e in zip(observations, legal, envs, strict=True)]

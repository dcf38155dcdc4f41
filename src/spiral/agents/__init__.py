"""Agents choose an action text from an observation: fixed opponents, API clients, humans, the LM policy."""

from spiral.agents.factory import make_agent

__all__ = ["make_agent"]

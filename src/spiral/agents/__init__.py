"""Agents choose an action text from an observation: fixed opponents, API clients, humans, the LM policy."""

"""The game registry: env id -> factory ("module:Class" imported on first use, or a callable)."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from runkit.errors import UserError
from spiral.games.base import Env

TEXTARENA_PREFIX = "textarena/"

_REGISTRY: dict[str, str | Callable[..., Env]] = {
    "TicTacToe-v0": "spiral.games.tictactoe:TicTacToe",
    "KuhnPoker-v1": "spiral.games.kuhn_poker:KuhnPokerV1",
    "KuhnPoker-v2": "spiral.games.kuhn_poker:KuhnPoker",
    "SimpleNegotiation-v1": "spiral.games.negotiation:SimpleNegotiation",
    "SingleTokenGuess-v0": "spiral.games.guess:SingleTokenGuess",
}


def register(env_id: str, factory: str | Callable[..., Env], overwrite: bool = False) -> None:
    """Add a game: `factory` is "module:Class" (imported lazily) or a callable returning an Env."""
    if env_id in _REGISTRY and not overwrite:
        raise ValueError(f"game {env_id!r} is already registered (pass overwrite=True to replace it)")
    if isinstance(factory, str) and ":" not in factory:
        raise ValueError(f"factory path must look like 'package.module:Class', got {factory!r}")
    _REGISTRY[env_id] = factory


def list_env_ids() -> list[str]:
    """Registered game ids (TextArena games are reachable as 'textarena/<EnvId>' besides these)."""
    return sorted(_REGISTRY)


def _resolve(env_id: str, factory: str | Callable[..., Env]) -> Callable[..., Env]:
    """Import a "module:Class" factory."""
    if callable(factory):
        return factory
    module, _, name = factory.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise UserError(f"game {env_id!r} is registered as {factory!r}, which cannot be imported: {e}") from e


def make(env_id: str, **kwargs) -> Env:
    """Build the game `env_id` with options (parse_mode, invalid_penalty, rounds, ...)."""
    if env_id.startswith(TEXTARENA_PREFIX):
        from spiral.games.textarena_env import TextArenaEnv

        return TextArenaEnv(env_id[len(TEXTARENA_PREFIX) :], **kwargs)
    if env_id not in _REGISTRY:
        known = ", ".join(list_env_ids())
        raise UserError(f"unknown game {env_id!r}; known games: {known}, or textarena/<EnvId>")
    factory = _resolve(env_id, _REGISTRY[env_id])
    try:
        env = factory(**kwargs)
    except TypeError as e:
        if "keyword argument" not in str(e):
            raise
        raise UserError(f"bad option for game {env_id!r}: {e}") from None
    env.env_id = env_id
    return env

"""Two-player zero-sum text games: `make(env_id)` builds one; see `list_env_ids()`."""

from spiral.games.registry import list_env_ids, make, register

__all__ = ["list_env_ids", "make", "register"]

"""Adapter: any two-player TextArena game as a spiral Env (`textarena/<EnvId>`), with our parsing and penalty.

TextArena is imported only when such a game is made (it takes seconds to import). Its observations are
used as they are; legal actions are read, best effort, from the last line of the observation that lists
quoted tokens such as '[4]' (TextArena has no legal-action API). TextArena seeds the global `random`
module in reset().
"""

from __future__ import annotations

import re

from runkit.errors import UserError
from spiral.games.base import TRAIN_PENALTY, Env, InvalidPenalty
from spiral.games.core import as_penalty, oversized_reason
from spiral.prompting import PARSE_MODES, answer_region

_QUOTED_TOKEN = re.compile(r"'(\[[^\[\]']{1,40}\])'")


def legal_from_text(observation: str) -> list[str]:
    """Quoted bracket tokens of the last observation line that has any."""
    for line in reversed(observation.splitlines()):
        tokens = _QUOTED_TOKEN.findall(line)
        if tokens:
            return list(dict.fromkeys(tokens))
    return []


def _innermost(env):
    """The TextArena env under its wrappers."""
    while hasattr(env, "env") and not hasattr(env, "state"):
        env = env.env
    return env


class TextArenaEnv(Env):
    """A TextArena two-player game; invalid moves end the game at once with our penalty."""

    def __init__(
        self,
        ta_id: str,
        parse_mode: str = "strict",
        invalid_penalty: InvalidPenalty | tuple[float, float] | str = TRAIN_PENALTY,
        max_turns: int = 200,
        **ta_kwargs,
    ) -> None:
        if parse_mode not in PARSE_MODES:
            raise UserError(f"parse_mode must be one of {PARSE_MODES}, got {parse_mode!r}")
        try:
            import textarena as ta
        except ImportError as e:
            raise UserError("textarena/... games need the textarena package (pip install textarena)") from e
        if ta_id not in ta.envs.registration.ENV_REGISTRY:
            raise UserError(f"unknown TextArena game {ta_id!r}; see textarena.envs.registration.ENV_REGISTRY")
        self.env_id = f"textarena/{ta_id}"
        self.ta_id = ta_id
        self.parse_mode = parse_mode
        self.invalid_penalty = as_penalty(invalid_penalty)
        self.max_turns = max_turns
        self._make = lambda: ta.make(ta_id, **ta_kwargs)
        self._env = self._make()
        self.done = True

    def reset(self, num_players: int = 2, seed: int | None = None) -> None:
        """Reset the TextArena game; make its first invalid move final (no retry)."""
        if num_players != 2:
            raise UserError(f"{self.env_id}: only two-player games are supported")
        # A fresh env per game: TextArena's LLMObservationWrapper keeps the history across reset() calls.
        self._env = self._make()
        self._env.reset(num_players=2, seed=seed)
        state = getattr(_innermost(self._env), "state", None)
        if state is not None and hasattr(state, "error_allowance"):
            state.error_allowance = 0  # our rule: an invalid move ends the game
        self.done = False
        self.turn = 0
        self._obs: tuple[int, str] | None = None
        self._result: tuple[dict[int, float], dict] | None = None

    def get_observation(self) -> tuple[int, str]:
        """TextArena's observation of the player to move (read once per state: TextArena drains it)."""
        if self._obs is None:
            pid, obs = self._env.get_observation()
            if not isinstance(obs, str):  # unwrapped envs give message tuples
                obs = "\n".join(m[1] if isinstance(m, tuple) else str(m) for m in obs)
            self._obs = (int(pid), obs)
        return self._obs

    def legal_actions(self) -> list[str]:
        """Best-effort legal tokens listed in the observation (may be empty)."""
        return legal_from_text(self.get_observation()[1])

    def _to_ta_action(self, action: str) -> str | None:
        """The text passed to TextArena: a listed token, or the answer region (bracketed when bare)."""
        stripped = action.strip()
        if stripped in self.legal_actions():
            return stripped
        region = answer_region(action, self.parse_mode)
        if region is None:
            return None
        return region if "[" in region else f"[{region}]"

    def step(self, action: str) -> tuple[bool, dict]:
        """Pass the parsed action to TextArena; map its ending to our rewards."""
        if self.done:
            raise RuntimeError("step() called on a finished game; call reset() first")
        player = self.get_observation()[0]
        too_long = oversized_reason(action)
        ta_action = None if too_long else self._to_ta_action(action)
        self.turn += 1
        self._obs = None
        if ta_action is None:
            reason = too_long or "no \\boxed{} answer in the response"
            self._end_invalid(player, reason)
            return True, {"invalid_move": True, "reason": reason}
        done, _ = self._env.step(ta_action)
        if done:
            return True, self._finish_from_textarena()
        if self.turn >= self.max_turns:
            self._set_result({0: 0.0, 1: 0.0}, None, f"turn limit of {self.max_turns} reached: draw", None)
            return True, {"reason": self._result[1]["reason"]}
        return False, {}

    def _finish_from_textarena(self) -> dict:
        """Read TextArena's rewards and info (close() returns (rewards, info) from 0.6.9 on)."""
        closed = self._env.close()
        rewards, game_info = closed if isinstance(closed, tuple) else (closed, {})
        rewards = {int(k): float(v) for k, v in (rewards or {}).items()}
        per_player = {p: game_info.get(p, {}) for p in (0, 1)} if isinstance(game_info, dict) else {}
        reason = next((str(i.get("reason")) for i in per_player.values() if i.get("reason")), "game over")
        offender = next((p for p, i in per_player.items() if i.get("invalid_move")), None)
        if offender is not None:
            self._end_invalid(offender, reason)
            return {"invalid_move": True, "reason": reason}
        winner = None
        if rewards and rewards.get(0, 0.0) != rewards.get(1, 0.0):
            winner = 0 if rewards.get(0, 0.0) > rewards.get(1, 0.0) else 1
        self._set_result({0: rewards.get(0, 0.0), 1: rewards.get(1, 0.0)}, winner, reason, None)
        return {"reason": reason}

    def _end_invalid(self, player: int, reason: str) -> None:
        """Our invalid-move ending: the configured penalty."""
        pen = self.invalid_penalty
        rewards = {player: pen.offender, 1 - player: pen.opponent}
        self._set_result(rewards, 1 - player, f"invalid move by Player {player}: {reason}", player)

    def _set_result(self, rewards: dict, winner: int | None, reason: str, invalid: int | None) -> None:
        """Store the final rewards and info."""
        self.done = True
        if winner is None:
            outcome = {0: "draw", 1: "draw"}
        else:
            outcome = {winner: "win", 1 - winner: "loss"}
        info = {"outcome": outcome, "winner": winner, "reason": reason, "turns": self.turn}
        self._result = (rewards, {**info, "invalid_player": invalid})

    def close(self) -> tuple[dict[int, float], dict]:
        """Final rewards and info; an unfinished game closes as an aborted draw."""
        if self._result is None:
            self._set_result({0: 0.0, 1: 0.0}, None, "game closed before it ended", None)
        rewards, info = self._result
        return dict(rewards), dict(info)

"""Bookkeeping shared by the built-in games: parsing, turns, invalid moves, rewards and the final info."""

from __future__ import annotations

import random
from abc import abstractmethod

from runkit.errors import UserError
from spiral.games.base import EVAL_PENALTY, TRAIN_PENALTY, Env, InvalidPenalty
from spiral.prompting import PARSE_MODES, extract_boxed, parse_action

PENALTIES = {"train": TRAIN_PENALTY, "eval": EVAL_PENALTY}
# The longest text a game parses as a move. Model replies are bounded by max_new_tokens; API and human replies
# are not, and a reply far past any model's length is refused before it is parsed.
MAX_ACTION_CHARS = 32_768


def oversized_reason(action: str) -> str | None:
    """Why `action` is too long to be parsed as a move, or None when it is short enough."""
    if len(action) <= MAX_ACTION_CHARS:
        return None
    return f"the response is {len(action):,} characters; a move may be at most {MAX_ACTION_CHARS:,}"


def int_option(env_id: str, name: str, value: object, low: int, high: int) -> int:
    """A game option that must be an integer in [low, high]; UserError naming the range otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UserError(f"{env_id}: {name} must be an integer from {low} to {high}, got {value!r}")
    return value


def as_penalty(value: InvalidPenalty | tuple[float, float] | str) -> InvalidPenalty:
    """Accept an InvalidPenalty, an (offender, opponent) pair or the names 'train' / 'eval'."""
    if isinstance(value, InvalidPenalty):
        return value
    if isinstance(value, str):
        if value not in PENALTIES:
            raise UserError(f"invalid_penalty must be one of {sorted(PENALTIES)} or a pair, got {value!r}")
        return PENALTIES[value]
    offender, opponent = value
    return InvalidPenalty(float(offender), float(opponent))


class TextGame(Env):
    """A two-player zero-sum game whose step() takes raw model text.

    Subclasses implement new_game, legal_actions, apply and render; apply calls finish() when the game ends
    and otherwise sets `self.player` to the next player. A text that is exactly a legal action is taken as
    is (fixed opponents send canonical actions); anything else goes through `parse_action`.
    """

    max_turns: int = 0
    game_name: str = ""

    def __init__(
        self,
        parse_mode: str = "strict",
        invalid_penalty: InvalidPenalty | tuple[float, float] | str = TRAIN_PENALTY,
    ) -> None:
        if parse_mode not in PARSE_MODES:
            raise UserError(f"parse_mode must be one of {PARSE_MODES}, got {parse_mode!r}")
        self.parse_mode = parse_mode
        self.invalid_penalty = as_penalty(invalid_penalty)
        self.done = True  # no game until reset()
        self.player = 0
        self.turn = 0
        self._obs: str | None = None
        self._rewards: dict[int, float] | None = None
        self._final: dict = {}

    # ---- subclass hooks -------------------------------------------------------------------------
    @abstractmethod
    def new_game(self) -> None:
        """Set up a fresh game state using self.rng."""

    @abstractmethod
    def apply(self, action: str) -> None:
        """Apply a canonical legal action of self.player."""

    @abstractmethod
    def render(self, player: int) -> str:
        """The observation text of `player`."""

    def on_turn_limit(self) -> None:
        """Called when max_turns moves were made and the game has not ended: a draw by default."""
        self.finish(None, f"turn limit of {self.max_turns} reached: draw")

    def extra_info(self) -> dict:
        """Game-specific entries of the final info (chips, inventories)."""
        return {}

    def match(self, action: str) -> str | None:
        """The canonical legal action that `action` names, or None."""
        stripped = action.strip()
        legal = self.legal_actions()
        if stripped in legal:
            return stripped
        return parse_action(action, legal, self.parse_mode)

    def invalid_reason(self, action: str) -> str:
        """Why `action` was rejected, in one line."""
        boxed = extract_boxed(action)
        if boxed is None and self.parse_mode == "strict":
            return "no \\boxed{} answer in the response"
        shown = boxed if boxed is not None else action.strip()
        legal = " ".join(self.legal_actions()[:12])
        return f"{shown[:60]!r} is not a legal action (legal: {legal})"

    # ---- Env API --------------------------------------------------------------------------------
    def reset(self, num_players: int = 2, seed: int | None = None) -> None:
        """Start a new game; `seed` fixes the deal (cards) where the game has chance."""
        if num_players != 2:
            raise UserError(f"{self.env_id or self.game_name} is a two-player game; num_players must be 2")
        self.rng = random.Random(seed)
        self.player = 0
        self.turn = 0
        self.done = False
        self._obs = None
        self._rewards = None
        self._final = {}
        self.new_game()

    def get_observation(self) -> tuple[int, str]:
        """The player to move and their own view (rendered once per state)."""
        if self._obs is None:
            self._obs = self.render(self.player)
        return self.player, self._obs

    def step(self, action: str) -> tuple[bool, dict]:
        """Apply the current player's text; an invalid one ends the game with the penalty."""
        if self.done:
            raise RuntimeError("step() called on a finished game; call reset() first")
        too_long = oversized_reason(action)
        move = None if too_long else self.match(action)
        self.turn += 1
        self._obs = None
        if move is None:
            reason = too_long or self.invalid_reason(action)
            self._end_invalid(reason)
            return True, {"invalid_move": True, "reason": reason}
        self.apply(move)
        if not self.done and self.turn >= self.max_turns:
            self.on_turn_limit()
        return self.done, ({"reason": self._final["reason"]} if self.done else {})

    def close(self) -> tuple[dict[int, float], dict]:
        """Final rewards and info; an unfinished game closes as an aborted draw."""
        if self._rewards is None:
            self.finish(None, "game closed before it ended")
        return dict(self._rewards), dict(self._final)

    # ---- endings --------------------------------------------------------------------------------
    def finish(self, winner: int | None, reason: str) -> None:
        """End the game: winner +1 / loser -1, or a 0 / 0 draw when winner is None."""
        if winner is None:
            self._rewards = {0: 0.0, 1: 0.0}
            outcome = {0: "draw", 1: "draw"}
        else:
            self._rewards = {winner: 1.0, 1 - winner: -1.0}
            outcome = {winner: "win", 1 - winner: "loss"}
        self._close_with(outcome, winner, reason, invalid_player=None)

    def _end_invalid(self, reason: str) -> None:
        """The player to move made an invalid move: the game ends with the configured penalty."""
        p = self.player
        self._rewards = {p: self.invalid_penalty.offender, 1 - p: self.invalid_penalty.opponent}
        outcome = {p: "loss", 1 - p: "win"}
        self._close_with(outcome, 1 - p, f"invalid move by Player {p}: {reason}", invalid_player=p)

    def _close_with(self, outcome: dict, winner: int | None, reason: str, invalid_player: int | None) -> None:
        """Record the final info and mark the game done."""
        self.done = True
        self._final = {
            "outcome": outcome,
            "winner": winner,
            "reason": reason,
            "turns": self.turn,
            "invalid_player": invalid_player,
            **self.extra_info(),
        }

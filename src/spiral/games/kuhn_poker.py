"""Kuhn Poker: KuhnPoker-v2 (standard rules, N rounds) and KuhnPoker-v1 (SPIRAL's variant with its quirks).

Deck J < Q < K; each round both players ante 1 and get one private card. The round's opener may [check]
or [bet]; after a check the other player may [check] or [bet]; facing a bet a player may [call] or
[fold]. Standard rules: a bet or call adds 1 chip to the pot. v1 keeps the two quirks of the paper's game:
betting never grows the pot (every round is won or lost by 1 chip) and the winner of the last round wins
the game.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from runkit.errors import UserError
from spiral.games.core import TextGame, int_option

CARDS = ("J", "Q", "K")
OPEN_ACTIONS = ["[check]", "[bet]"]
FACING_BET = ["[fold]", "[call]"]
# Standard Kuhn letters: p = pass (check/fold), b = bet (bet/call); keys like "Kpb" name information sets.
LETTER = {"[check]": "p", "[fold]": "p", "[bet]": "b", "[call]": "b"}
# What a finished game pays: net chips won (zero-sum; the game OpenSpiel's exploitability measures) or the
# outcome +1 / 0 / -1 (the paper's; in one round it makes calling weakly dominant whatever the card).
REWARDS = ("chips", "outcome")


@dataclass(frozen=True)
class RoundRecord:
    """A finished round as both players saw it."""

    opener: int
    actions: tuple[str, ...]
    winner: int
    chips: int  # what the winner won from the loser
    shown: tuple[int, int] | None  # both cards when the round went to showdown

    def as_dict(self) -> dict:
        """A JSON-friendly copy (dataclasses.asdict is slow on the rollout path)."""
        return {"opener": self.opener, "actions": list(self.actions), "winner": self.winner,
                "chips": self.chips, "shown": self.shown}  # fmt: skip


def _legal_after(history: list[str]) -> list[str]:
    """Legal actions after the round's actions so far."""
    if history and history[-1] == "[bet]":
        return FACING_BET
    return OPEN_ACTIONS


class KuhnPoker(TextGame):
    """Kuhn Poker over several rounds; the class variables choose the rule variant."""

    env_id = "KuhnPoker-v2"
    game_name = "Kuhn Poker"
    pot_grows = True
    last_round_decides = False
    first_opener = 0

    default_reward = "chips"

    def __init__(self, rounds: int = 5, reward: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        rounds = int_option(self.env_id, "rounds", rounds, 1, 100)  # 100: every observation lists each round
        reward = reward or self.default_reward
        if reward not in REWARDS:
            raise UserError(f"{self.env_id}: reward must be one of {', '.join(REWARDS)}, got {reward!r}")
        self.rounds, self.reward = rounds, reward
        self.max_turns = 3 * rounds  # a round has at most check, bet, call/fold
        self._header = tuple(self._rules(p) for p in (0, 1))

    def _rules(self, player: int) -> str:
        """The fixed part of a player's observation."""
        if self.pot_grows:
            money = "A bet or a call adds 1 chip to the pot."
            goal = (
                f"After {self.rounds} round(s) the player with more chips wins the game (equal chips: draw)."
            )
        else:
            money = "Bets and calls do not add chips: every round is won or lost by exactly 1 chip."
            goal = f"The winner of the last round (round {self.rounds}) wins the game."
        return (
            f"You are Player {player} in Kuhn Poker, a two-player zero-sum card game.\n"
            "Rules: the deck is J < Q < K. Each round both players ante 1 chip and get one private card. "
            "The opener acts first: [check] or [bet]. After a check the other player may [check] or [bet]. "
            "Facing a bet: [call] or [fold] (folding loses the pot). After two checks or a called bet the "
            f"higher card wins the pot. {money} The opener alternates between rounds. {goal}\n"
        )

    # ---- state ----------------------------------------------------------------------------------
    def new_game(self) -> None:
        """Deal every round's cards up front so that a seed fixes the whole deal."""
        self.deals = [tuple(self.rng.sample(range(3), 2)) for _ in range(self.rounds)]
        self.round = 0
        self.chips = [0, 0]
        self.history: list[str] = []
        self.past: list[RoundRecord] = []
        self._past_text = ""  # rendered lines of finished rounds, grown once per round
        self.player = self.opener(0)

    def opener(self, round_index: int) -> int:
        """Who acts first in a round."""
        return (self.first_opener + round_index) % 2

    def card(self, player: int) -> int:
        """The player's card in the current round (0=J, 1=Q, 2=K)."""
        return self.deals[self.round][player]

    def infoset_key(self, player: int) -> str:
        """Standard Kuhn information set of the player in this round, e.g. 'Kpb'."""
        return CARDS[self.card(player)] + "".join(LETTER[a] for a in self.history)

    def legal_actions(self) -> list[str]:
        """[check]/[bet] when no bet is pending, else [fold]/[call]."""
        return _legal_after(self.history)

    # ---- moves ----------------------------------------------------------------------------------
    def apply(self, action: str) -> None:
        """Record the action; settle the round after a fold, two checks or a call."""
        self.history.append(action)
        h = self.history
        if action == "[fold]":
            self._settle(winner=1 - self.player, chips=1, showdown=False)
        elif action == "[call]" or h == ["[check]", "[check]"]:
            self._settle(winner=self._showdown_winner(), chips=2 if action == "[call]" else 1, showdown=True)
        else:
            self.player ^= 1

    def _showdown_winner(self) -> int:
        """The player holding the higher card."""
        c0, c1 = self.deals[self.round]
        return 0 if c0 > c1 else 1

    def _settle(self, winner: int, chips: int, showdown: bool) -> None:
        """Move chips, store the round and start the next one or end the game."""
        if not self.pot_grows:
            chips = 1
        self.chips[winner] += chips
        self.chips[1 - winner] -= chips
        opener = self.opener(self.round)
        shown = self.deals[self.round] if showdown else None
        record = RoundRecord(opener, tuple(self.history), winner, chips, shown)
        self.past.append(record)
        self._past_text += _round_line(len(self.past) - 1, record)
        self.history = []
        if self.round + 1 < self.rounds:
            self.round += 1
            self.player = self.opener(self.round)
            return
        self._end_game(last_winner=winner)

    def _end_game(self, last_winner: int) -> None:
        """v1: last round's winner wins; standard: more chips wins, equal chips draw. The outcome (win / draw
        / loss) is the same under both rewards; `reward = chips` pays the net chips instead of +1 / -1."""
        if self.last_round_decides:
            self.finish(last_winner, f"Player {last_winner} won the last round")
        elif self.chips[0] == self.chips[1]:
            self.finish(None, "equal chips after the last round: draw")
        else:
            w = 0 if self.chips[0] > self.chips[1] else 1
            self.finish(w, f"Player {w} has more chips ({self.chips[w]:+d}) after {self.rounds} round(s)")
        if self.reward == "chips":
            self._rewards = {0: float(self.chips[0]), 1: float(self.chips[1])}

    def extra_info(self) -> dict:
        """Chip results (net, per player) and every round."""
        return {"chips": {0: self.chips[0], 1: self.chips[1]}, "rounds": [r.as_dict() for r in self.past]}

    # ---- rendering ------------------------------------------------------------------------------
    def render(self, player: int) -> str:
        """Rules, chips, past rounds, own card, this round's actions and the legal actions."""
        opener = self.opener(self.round)
        who = "You open this round." if opener == player else f"Player {opener} opens this round."
        now = ", ".join(f"P{(opener + i) % 2} {a}" for i, a in enumerate(self.history)) or "no actions yet"
        return (
            f"{self._header[player]}"
            f"Chips so far: you {self.chips[player]:+d}, opponent {self.chips[1 - player]:+d}.\n"
            f"{self._past_text}"
            f"Round {self.round + 1} of {self.rounds}. {who}\n"
            f"Your card: {CARDS[self.card(player)]}\n"
            f"This round: {now}\n"
            f"Your legal actions: {' '.join(self.legal_actions())}"
        )


def _round_line(i: int, r: RoundRecord) -> str:
    """One line of round history as both players saw it (cards only when shown down)."""
    acts = ", ".join(f"P{(r.opener + k) % 2} {a}" for k, a in enumerate(r.actions))
    end = f"showdown {CARDS[r.shown[0]]} (P0) vs {CARDS[r.shown[1]]} (P1)" if r.shown else "fold"
    return f"Round {i + 1}: {acts}; {end}; Player {r.winner} won {r.chips} chip(s).\n"


class KuhnPokerV1(KuhnPoker):
    """SPIRAL's Kuhn Poker: 5 rounds, Player 1 opens round 1, flat pot, last round decides."""

    env_id = "KuhnPoker-v1"
    default_reward = "outcome"
    pot_grows = False
    last_round_decides = True
    first_opener = 1


_CARD_LINE = re.compile(r"^Your card: ([JQK])$", re.MULTILINE)
_ROUND_LINE = re.compile(r"^This round: (.*)$", re.MULTILINE)
_ACTION = re.compile(r"\[(check|bet|call|fold)\]")


def infoset_from_observation(observation: str) -> str:
    """The standard information-set key ('Qpb') of a rendered Kuhn observation."""
    card = _CARD_LINE.search(observation)
    line = _ROUND_LINE.search(observation)
    if card is None or line is None:
        raise ValueError("observation is not a Kuhn Poker observation")
    return card.group(1) + "".join(LETTER[f"[{a}]"] for a in _ACTION.findall(line.group(1)))


def infoset_observation(key: str) -> tuple[int, str, list[str]]:
    """Player, observation and legal actions of a one-round KuhnPoker-v2 at information set `key`."""
    card, letters = CARDS.index(key[0]), key[1:]
    player = len(letters) % 2
    env = KuhnPoker(rounds=1)
    env.reset(seed=0)
    other = next(c for c in range(3) if c != card)  # the opponent's card never shows in the observation
    env.deals[0] = (card, other) if player == 0 else (other, card)
    for letter in letters:
        legal = env.legal_actions()
        env.step(legal[0] if letter == "p" else legal[1])
    pid, obs = env.get_observation()
    assert pid == player
    return player, obs, list(env.legal_actions())

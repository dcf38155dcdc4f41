"""Kuhn Poker policies: the Nash family, exact best responses and exploitability of one-round Kuhn.

A policy maps each of the 12 information sets to the probability of the aggressive action (bet or call).
Keys are the card and the round's history in standard letters, p = check/fold, b = bet/call: 'J', 'Qp',
'Kb', 'Jpb'. The round's opener plays the keys with an even-length history (OpenSpiel's player 0).
"""

from __future__ import annotations

import random

from runkit.errors import UserError
from spiral.agents.base import Agent
from spiral.games.kuhn_poker import CARDS, infoset_from_observation

Policy = dict[str, float]

OPENER_HISTORIES = ("", "pb")
RESPONDER_HISTORIES = ("p", "b")
KEYS = tuple(c + h for c in CARDS for h in OPENER_HISTORIES + RESPONDER_HISTORIES)
TERMINALS = ("pp", "bb", "bp", "pbb", "pbp")
MAX_ALPHA = 1 / 3


def uniform_policy() -> Policy:
    """Both actions with probability 1/2 everywhere."""
    return dict.fromkeys(KEYS, 0.5)


def nash_policy(alpha: float = 0.0) -> Policy:
    """Kuhn's equilibrium family: the opener bets J with alpha, K with 3 alpha, calls with Q at alpha + 1/3."""
    if not 0.0 <= alpha <= MAX_ALPHA + 1e-12:
        raise UserError(f"nash alpha must lie in [0, 1/3], got {alpha}")
    return {
        "J": alpha, "Q": 0.0, "K": 3 * alpha,  # opener's first action: bet probability
        "Jpb": 0.0, "Qpb": alpha + 1 / 3, "Kpb": 1.0,  # opener after check-bet: call probability
        "Jp": 1 / 3, "Qp": 0.0, "Kp": 1.0,  # responder after a check: bet probability
        "Jb": 0.0, "Qb": 1 / 3, "Kb": 1.0,  # responder facing a bet: call probability
    }  # fmt: skip


def payoff_opener(opener_card: int, responder_card: int, history: str) -> int:
    """Chips the opener wins at a terminal history (standard rules: ante 1, bet 1)."""
    if history == "bp":
        return 1
    if history == "pbp":
        return -1
    stake = 1 if history == "pp" else 2
    return stake if opener_card > responder_card else -stake


def _prob(policy: Policy, key: str, letter: str) -> float:
    """Probability of the letter's action at an information set."""
    p = policy[key]
    return p if letter == "b" else 1.0 - p


def best_response(policy: Policy, player: int) -> tuple[float, Policy]:
    """Exact best response of seat `player` (0 = opener) to `policy`: its expected chips and its policy."""
    br: Policy = {}

    def value(card: int, history: str, weights: dict[int, float]) -> float:
        # weights: opponent card -> probability of the deal and of the opponent's actions so far
        if history in TERMINALS:
            sign = 1 if player == 0 else -1
            total = 0.0
            for other, w in weights.items():
                opener, responder = (card, other) if player == 0 else (other, card)
                total += w * sign * payoff_opener(opener, responder, history)
            return total
        if len(history) % 2 == player:
            passive, aggressive = value(card, history + "p", weights), value(card, history + "b", weights)
            br[CARDS[card] + history] = 1.0 if aggressive > passive + 1e-12 else 0.0
            return max(passive, aggressive)
        total = 0.0
        for letter in "pb":
            nxt = {o: w * _prob(policy, CARDS[o] + history, letter) for o, w in weights.items()}
            total += value(card, history + letter, nxt)
        return total

    v = sum(value(c, "", {o: 1 / 6 for o in range(3) if o != c}) for c in range(3))
    return v, br


def policy_value(policy: Policy) -> float:
    """Expected chips of the opener when both seats follow `policy`."""

    def value(c0: int, c1: int, history: str) -> float:
        if history in TERMINALS:
            return payoff_opener(c0, c1, history)
        card = c0 if len(history) % 2 == 0 else c1
        key = CARDS[card] + history
        return sum(_prob(policy, key, a) * value(c0, c1, history + a) for a in "pb")

    return sum(value(c0, c1, "") / 6 for c0 in range(3) for c1 in range(3) if c0 != c1)


def exploitability(policy: Policy) -> float:
    """OpenSpiel's exploitability (NashConv / 2) of `policy` in one-round standard Kuhn Poker."""
    return (best_response(policy, 0)[0] + best_response(policy, 1)[0]) / 2


def own_reach(policy: Policy, key: str) -> float:
    """Probability that the player's own earlier actions lead to information set `key` (1 for first moves;
    the opener reaches 'Xpb' only by checking first)."""
    return 1.0 - policy[key[0]] if key[1:] == "pb" else 1.0


def average_policy(policies: list[Policy]) -> Policy:
    """The average strategy of a sequence of policies: each information set's probabilities weighted by the
    player's own reach probability (the policy that plays like a uniformly drawn one, as in CFR's average)."""
    if not policies:
        raise ValueError("average_policy needs at least one policy")
    out: Policy = {}
    for key in KEYS:
        w = [own_reach(p, key) for p in policies]
        total = sum(w)
        out[key] = (
            sum(wi * p[key] for wi, p in zip(w, policies, strict=True)) / total
            if total > 0
            else sum(p[key] for p in policies) / len(policies)
        )
    return out


def best_response_policy(target: Policy) -> Policy:
    """A full policy that best-responds to `target` in both seats."""
    return {**best_response(target, 0)[1], **best_response(target, 1)[1]}


class KuhnPolicyAgent(Agent):
    """Plays a Kuhn policy in every round of a Kuhn game (v1 or v2), from env state or the observation."""

    def __init__(self, policy: Policy, seed: int | None = None, name: str = "kuhn-policy") -> None:
        missing = set(KEYS) - set(policy)
        if missing:
            raise ValueError(f"policy lacks information sets {sorted(missing)}")
        self.policy = policy
        self.rng = random.Random(seed)
        self.name = name

    def act(self, observation: str, legal_actions: list[str], env=None) -> str:
        """Sample the aggressive action with the policy's probability at the current information set."""
        if env is not None and hasattr(env, "infoset_key"):
            key = env.infoset_key(env.player)
        else:
            key = infoset_from_observation(observation)
        aggressive = "[bet]" if "[bet]" in legal_actions else "[call]"
        passive = "[check]" if "[check]" in legal_actions else "[fold]"
        return aggressive if self.rng.random() < self.policy[key] else passive


def nash_agent(alpha: float = 0.0, seed: int | None = None) -> KuhnPolicyAgent:
    """The Nash-family agent with parameter alpha, applied to every round."""
    return KuhnPolicyAgent(nash_policy(alpha), seed, name=f"nash(alpha={alpha:g})")


def best_response_agent(
    target: Policy | None = None, seed: int | None = None, name: str = ""
) -> KuhnPolicyAgent:
    """The exact best response to `target` (uniform random by default), applied to every round."""
    target = uniform_policy() if target is None else target
    return KuhnPolicyAgent(best_response_policy(target), seed, name=name or "best-response")

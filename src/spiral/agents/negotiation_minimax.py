"""A game-theoretically optimal Simple Negotiation agent, the analogue of TicTacToe's minimax agent.

The game is zero-sum in its outcome: sign(gain_0 - gain_1) at the turn limit, each gain by its owner's values.
A trade needs the other player's [Accept], and [Deny] is always legal, so either player can keep the current
lead sign to the end. With L = sign(own gain - opponent's gain) now and A = L after accepting the pending
offer (if any), the action values for the player to move under optimal play are:
  - [Accept]: A (the opponent then faces no offer and can only keep that sign);
  - [Deny]: L;
  - an offer: min(L, L after the trade), since an optimal opponent accepts only what does not hurt it; on the
    last turn no reply can follow, so every offer is worth L.
The state's value is max(L, A). The agent plays uniformly at random among the actions of that value, as the
TicTacToe minimax agent does among optimal moves. It never loses a game it is not already losing; against it a
player loses only by accepting an offer that puts it behind (or by offering one while it cannot be refused,
which never happens: a reply always follows unless the game ends). So the loss rate against it counts the
trades an agent gets wrong, the measure TicTacToe uses. The test suite checks these values against exhaustive
search on small games with several value tables. The agent reads both players' values from the env (an
evaluator's privileged view; the game tells the players only their own).
"""

from __future__ import annotations

import random

from spiral.agents.base import Agent
from spiral.games.negotiation import ACCEPT, DENY, offer_terms


def _sign(x: int) -> int:
    return (x > 0) - (x < 0)


def lead(env, player: int) -> int:
    """Own gain minus the opponent's, each by their own values."""
    return env.gain(player) - env.gain(1 - player)


def lead_after(env, player: int, give_res: int, give: int, get_res: int, get: int) -> int:
    """`lead` if `player` gave `give` of give_res and got `get` of get_res."""
    mine, theirs = env.values[player], env.values[1 - player]
    me = mine[get_res] * get - mine[give_res] * give
    other = theirs[give_res] * give - theirs[get_res] * get
    return lead(env, player) + me - other


def action_values(env, legal_actions: list[str]) -> dict[str, int]:
    """Each legal action's value (+1 win, 0 draw, -1 loss) for the player to move under optimal play."""
    p = env.player
    now = _sign(lead(env, p))
    last = env.turn + 1 >= env.max_turns
    out = {}
    for a in legal_actions:
        if a == ACCEPT:
            o = env.pending  # the proposer gives o.give of give_res and gets o.get of get_res
            out[a] = _sign(lead_after(env, p, o.get_res, o.get, o.give_res, o.give))
        elif a == DENY or last:
            out[a] = now
        else:
            terms = offer_terms(a)
            if terms is not None:
                out[a] = min(now, _sign(lead_after(env, p, *terms)))
    return out


def optimal_actions(env, legal_actions: list[str]) -> list[str]:
    """The legal actions of the player to move that keep the state's value."""
    values = action_values(env, legal_actions)
    best = max(values.values())
    return [a for a in legal_actions if values.get(a) == best]


class NegotiationMinimaxAgent(Agent):
    """Random among the optimal actions of SimpleNegotiation-v1 (needs the env: both players' values)."""

    name = "minimax"

    def __init__(self, seed: int | None = None) -> None:
        self.rng = random.Random(seed)

    def act(self, observation: str, legal_actions: list[str], env=None) -> str:
        """A uniformly drawn optimal action."""
        if env is None or not hasattr(env, "values") or not hasattr(env, "pending"):
            raise TypeError(
                "the negotiation minimax agent needs the SimpleNegotiation env (both players' values)"
            )
        return self.rng.choice(optimal_actions(env, legal_actions))

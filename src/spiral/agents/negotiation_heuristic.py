"""A fixed Simple Negotiation opponent: accepts offers that raise its value, proposes ones that do."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from spiral.agents.base import Agent
from spiral.games.negotiation import ACCEPT, DENY, RESOURCES, Offer

_VALUES = re.compile(r"Your values per unit: Wood (\d+), Gold (\d+)")
_MINE = re.compile(r"Your inventory: (\d+) Wood, (\d+) Gold")
_THEIRS = re.compile(r"Opponent inventory: (\d+) Wood, (\d+) Gold")
_PENDING = re.compile(r"Pending offer: Player \d offers (\d+) (Wood|Gold) for your (\d+) (Wood|Gold)")


@dataclass(frozen=True)
class NegotiationView:
    """What one player knows: own values, both inventories, and the pending offer's (get, give) to them."""

    values: tuple[int, int]
    mine: tuple[int, int]
    theirs: tuple[int, int]
    pending: tuple[int, int, int, int] | None  # (resource received, amount, resource given, amount)


def view_from_env(env, player: int) -> NegotiationView:
    """The player's view read from a SimpleNegotiation env."""
    o = env.pending
    pending = (o.give_res, o.give, o.get_res, o.get) if o is not None else None
    return NegotiationView(
        tuple(env.values[player]), tuple(env.inventory[player]), tuple(env.inventory[1 - player]), pending
    )


def view_from_observation(observation: str) -> NegotiationView:
    """The player's view parsed from a rendered SimpleNegotiation observation."""
    values, mine, theirs = (
        _VALUES.search(observation),
        _MINE.search(observation),
        _THEIRS.search(observation),
    )
    if values is None or mine is None or theirs is None:
        raise ValueError("observation is not a Simple Negotiation observation")
    m = _PENDING.search(observation)
    pending = None
    if m is not None:
        pending = (RESOURCES.index(m.group(2)), int(m.group(1)), RESOURCES.index(m.group(4)), int(m.group(3)))
    as_pair = lambda match: (int(match.group(1)), int(match.group(2)))  # noqa: E731
    return NegotiationView(as_pair(values), as_pair(mine), as_pair(theirs), pending)


def trade_gain(values: tuple[int, int], get_res: int, get: int, give_res: int, give: int) -> int:
    """Change of own inventory value from receiving `get` and paying `give`."""
    return values[get_res] * get - values[give_res] * give


class NegotiationHeuristicAgent(Agent):
    """Accept a pending offer that raises own value; otherwise offer a small trade that does, else deny."""

    name = "heuristic"

    def __init__(self, seed: int | None = None, max_units: int = 3) -> None:
        self.rng = random.Random(seed)
        self.max_units = max_units

    def act(self, observation: str, legal_actions: list[str], env=None) -> str:
        """[Accept], a profitable offer, or [Deny]."""
        view = view_from_env(env, env.player) if env is not None and hasattr(env, "pending") else None
        view = view or view_from_observation(observation)
        if view.pending is not None and trade_gain(view.values, *view.pending) > 0:
            return ACCEPT
        offers = self._profitable_offers(view)
        return self.rng.choice(offers) if offers else DENY

    def _profitable_offers(self, view: NegotiationView) -> list[str]:
        """Offers of up to max_units per side that raise own value."""
        cheap = 0 if view.values[0] <= view.values[1] else 1  # give what we value less
        dear = 1 - cheap
        out = []
        for give in range(1, min(self.max_units, view.mine[cheap]) + 1):
            for get in range(1, min(self.max_units, view.theirs[dear]) + 1):
                if trade_gain(view.values, dear, get, cheap, give) > 0:
                    out.append(Offer(0, cheap, give, dear, get).token())
        return out

"""SimpleNegotiation-v1: trade Wood and Gold; after 10 turns the player whose inventory value grew more wins."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from runkit.errors import UserError
from spiral.games.core import TextGame, int_option
from spiral.prompting import answer_region

RESOURCES = ("Wood", "Gold")
DEFAULT_VALUES = ((5, 15), (15, 5))  # player 0 values Wood 5, Gold 15; player 1 the opposite
ACCEPT, DENY = "[Accept]", "[Deny]"
# Option ranges: a player may offer any amounts up to both inventories, so the legal actions grow as start^2
# (start 50: up to 10,000 offers); the history in every observation grows with max_turns.
MAX_START, MAX_TURNS, MAX_VALUE = 50, 100, 1000

_TOKEN = re.compile(r"\[\s*(accept|deny|offer\b[^\[\]]*)\]", re.IGNORECASE)
_BARE = re.compile(r"^\s*(accept|deny|offer\s*:.*)$", re.IGNORECASE | re.DOTALL)
_OFFER = re.compile(r"^offer\s*:?\s*(.*?)\s*->\s*(.*?)\s*[.!]?$", re.IGNORECASE | re.DOTALL)
_ITEM = re.compile(r"^(\d{1,4})\s+(wood|gold)s?$", re.IGNORECASE)
_CANONICAL_OFFER = re.compile(r"\[Offer: \d+ (?:Wood|Gold) -> \d+ (?:Wood|Gold)\]")


@dataclass(frozen=True)
class Offer:
    """`give` units of resource `give_res` for `get` units of `get_res` (indices into RESOURCES)."""

    proposer: int
    give_res: int
    give: int
    get_res: int
    get: int

    def token(self) -> str:
        """The canonical action text."""
        return f"[Offer: {self.give} {RESOURCES[self.give_res]} -> {self.get} {RESOURCES[self.get_res]}]"


@lru_cache(maxsize=4096)
def _offer_tokens(give_res: int, have: int, can_get: int) -> tuple[str, ...]:
    """Every one-for-one offer giving up to `have` of give_res for up to `can_get` of the other resource."""
    give_name, get_name = RESOURCES[give_res], RESOURCES[1 - give_res]
    return tuple(
        f"[Offer: {n} {give_name} -> {m} {get_name}]"
        for n in range(1, have + 1)
        for m in range(1, can_get + 1)
    )


def _parse_item(text: str) -> tuple[int, int] | None:
    """'3 Wood' -> (resource index, 3); None when malformed."""
    m = _ITEM.match(" ".join(text.split()))
    if m is None or int(m.group(1)) < 1:
        return None
    return RESOURCES.index(m.group(2).capitalize()), int(m.group(1))


def parse_token(region: str) -> str | None:
    """The last action token in `region` ('accept', 'deny' or 'offer: ...'), bracketed or bare."""
    tokens = _TOKEN.findall(region)
    if tokens:
        return " ".join(tokens[-1].split())
    bare = _BARE.match(region.strip().strip("'\"`"))
    return " ".join(bare.group(1).split()) if bare else None


def offer_terms(token: str) -> tuple[int, int, int, int] | None:
    """(give_res, give, get_res, get) of a canonical offer token such as '[Offer: 3 Wood -> 2 Gold]'."""
    if not _CANONICAL_OFFER.fullmatch(token):
        return None
    m = _OFFER.match(token[1:-1])
    (give_res, give), (get_res, get) = _parse_item(m.group(1)), _parse_item(m.group(2))
    return give_res, give, get_res, get


class SimpleNegotiation(TextGame):
    """Two players start with 10 Wood and 10 Gold and value them differently; values are private."""

    env_id = "SimpleNegotiation-v1"
    game_name = "Simple Negotiation"

    def __init__(
        self,
        max_turns: int = 10,
        start: int = 10,
        values: tuple[tuple[int, int], tuple[int, int]] = DEFAULT_VALUES,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.max_turns = int_option(self.env_id, "max_turns", max_turns, 1, MAX_TURNS)
        self.start = int_option(self.env_id, "start", start, 0, MAX_START)
        if not (isinstance(values, (list, tuple)) and len(values) == 2) or not all(
            isinstance(v, (list, tuple)) and len(v) == 2 for v in values
        ):
            raise UserError(f"{self.env_id}: values must be two [Wood, Gold] pairs, got {values!r}")
        self.values = tuple(
            tuple(int_option(self.env_id, "each value", x, 0, MAX_VALUE) for x in v) for v in values
        )

    def new_game(self) -> None:
        """Equal inventories, no pending offer."""
        self.inventory = [[self.start, self.start], [self.start, self.start]]
        self.initial_value = [self.value_of(p) for p in (0, 1)]
        self.pending: Offer | None = None
        self.log: list[str] = []
        self._legal: list[str] | None = None
        self._parsed: tuple[str, str | Offer | None, str] | None = None

    def value_of(self, player: int) -> int:
        """Inventory value of a player under their own values."""
        inv, val = self.inventory[player], self.values[player]
        return inv[0] * val[0] + inv[1] * val[1]

    def gain(self, player: int) -> int:
        """Growth of the player's inventory value since the start."""
        return self.value_of(player) - self.initial_value[player]

    # ---- actions --------------------------------------------------------------------------------
    def legal_actions(self) -> list[str]:
        """[Accept] (with an offer pending), [Deny] and every one-for-one offer the player can make."""
        if self._legal is None:
            me, other = self.inventory[self.player], self.inventory[1 - self.player]
            acts = [ACCEPT] if self.pending is not None else []
            acts.append(DENY)
            for r in (0, 1):
                acts.extend(_offer_tokens(r, me[r], other[1 - r]))
            self._legal = acts
        return self._legal

    def _interpret(self, action: str) -> tuple[str | Offer | None, str]:
        """(ACCEPT / DENY / an Offer, '') when valid, else (None, reason)."""
        stripped = action.strip()
        if stripped in (ACCEPT, DENY) or _CANONICAL_OFFER.fullmatch(stripped):
            region = stripped  # a canonical action, as fixed opponents send it
        else:
            region = answer_region(action, self.parse_mode)
        if region is None:
            return None, "no \\boxed{} answer in the response"
        token = parse_token(region)
        if token is None:
            return None, "no [Offer: ...], [Accept] or [Deny] token in the answer"
        low = token.lower()
        if low == "accept":
            return (ACCEPT, "") if self.pending is not None else (None, "no offer is pending to accept")
        if low == "deny":
            return DENY, ""
        return self._check_offer(token)

    def _check_offer(self, token: str) -> tuple[Offer | None, str]:
        """Validate an offer's format and that both sides can pay."""
        m = _OFFER.match(token)
        give = _parse_item(m.group(1)) if m else None
        get = _parse_item(m.group(2)) if m else None
        if give is None or get is None or give[0] == get[0]:
            return None, f"malformed offer {token[:60]!r}; write e.g. [Offer: 3 Wood -> 2 Gold]"
        offer = Offer(self.player, give[0], give[1], get[0], get[1])
        if offer.give > self.inventory[self.player][offer.give_res]:
            return None, f"offers {offer.give} {RESOURCES[offer.give_res]} but has fewer"
        if offer.get > self.inventory[1 - self.player][offer.get_res]:
            return None, f"asks for {offer.get} {RESOURCES[offer.get_res]} but the opponent has fewer"
        return offer, ""

    def match(self, action: str) -> str | None:
        """Parse once; keep the parsed move (and the reason when invalid) for apply / invalid_reason."""
        move, reason = self._interpret(action)
        self._parsed = (action, move, reason)
        if move is None:
            return None
        return move if isinstance(move, str) else move.token()

    def invalid_reason(self, action: str) -> str:
        """The reason found while parsing."""
        return self._parsed[2] if self._parsed and self._parsed[0] is action else self._interpret(action)[1]

    def apply(self, action: str) -> None:
        """Trade on accept; a new offer replaces (implicitly denies) the pending one."""
        move = self._parsed[1] if self._parsed else None
        p = self.player
        if action == ACCEPT:
            self._trade(self.pending, acceptor=p)
            self.log.append(f"Player {p}: [Accept] (trade done)")
            self.pending = None
        elif action == DENY:
            self.log.append(f"Player {p}: [Deny]")
            self.pending = None
        else:
            self.pending = move if isinstance(move, Offer) else None
            self.log.append(f"Player {p}: {action}")
        self._legal = None
        self.player ^= 1

    def _trade(self, offer: Offer, acceptor: int) -> None:
        """Move the goods of an accepted offer."""
        proposer = offer.proposer
        self.inventory[proposer][offer.give_res] -= offer.give
        self.inventory[acceptor][offer.give_res] += offer.give
        self.inventory[acceptor][offer.get_res] -= offer.get
        self.inventory[proposer][offer.get_res] += offer.get

    def on_turn_limit(self) -> None:
        """The player whose inventory value grew more wins; equal growth is a draw."""
        g0, g1 = self.gain(0), self.gain(1)
        if g0 == g1:
            self.finish(None, f"equal value growth ({g0:+d}) after {self.max_turns} turns: draw")
        else:
            w = 0 if g0 > g1 else 1
            self.finish(w, f"Player {w} grew their value more ({max(g0, g1):+d} vs {min(g0, g1):+d})")

    def extra_info(self) -> dict:
        """Value growth and inventories per player, and the number of trades done."""
        return {
            "value_change": {p: self.gain(p) for p in (0, 1)},
            "inventory": {p: dict(zip(RESOURCES, self.inventory[p], strict=True)) for p in (0, 1)},
            "trades": sum(line.endswith("(trade done)") for line in self.log),
        }

    # ---- rendering ------------------------------------------------------------------------------
    def render(self, player: int) -> str:
        """Rules, own values, both inventories, history, the pending offer and the action formats."""
        val, me, other = self.values[player], self.inventory[player], self.inventory[1 - player]
        history = "".join(f"- {line}\n" for line in self.log) or "- none\n"
        pending = "none"
        if self.pending is not None:
            o = self.pending
            pending = (
                f"Player {o.proposer} offers {o.give} {RESOURCES[o.give_res]} for your {o.get} "
                f"{RESOURCES[o.get_res]}"
            )
        accept = "[Accept] " if self.pending is not None else ""
        return (
            f"You are Player {player} in Simple Negotiation, a two-player zero-sum trading game.\n"
            f"Both players start with {self.start} Wood and {self.start} Gold. Your values per unit: Wood "
            f"{val[0]}, Gold {val[1]}. Your opponent's values are private and may differ.\n"
            f"The game lasts {self.max_turns} turns in total. At the end the player whose inventory value "
            "grew more (each by their own values) wins; equal growth is a draw.\n"
            "Actions: [Offer: 3 Wood -> 2 Gold] offers your 3 Wood for the opponent's 2 Gold and replaces "
            "any pending offer; [Accept] accepts the pending offer; [Deny] rejects it. Text around one "
            "action token is allowed.\n"
            f"Turn {self.turn + 1} of {self.max_turns}.\n"
            f"Your inventory: {me[0]} Wood, {me[1]} Gold (value {self.value_of(player)}, change "
            f"{self.gain(player):+d}).\n"
            f"Opponent inventory: {other[0]} Wood, {other[1]} Gold.\n"
            f"History:\n{history}"
            f"Pending offer: {pending}\n"
            f"Your legal actions: {accept}[Deny] [Offer: <n> Wood -> <m> Gold] (n <= {me[0]}, m <= "
            f"{other[1]}) [Offer: <n> Gold -> <m> Wood] (n <= {me[1]}, m <= {other[0]})"
        )

"""SimpleNegotiation-v1: offers, acceptance, invalid moves and the value-growth ending."""

from __future__ import annotations

import pytest

from spiral.games import make
from spiral.games.negotiation import parse_token


def _env(**kw):
    env = make("SimpleNegotiation-v1", **kw)
    env.reset(seed=0)
    return env


def test_starting_state_and_values() -> None:
    env = _env()
    assert env.inventory == [[10, 10], [10, 10]] and env.value_of(0) == env.value_of(1) == 200
    assert env.legal_actions()[0] == "[Deny]"  # no offer pending: nothing to accept
    _, obs = env.get_observation()
    assert "Your values per unit: Wood 5, Gold 15" in obs and "Wood 15, Gold 5" not in obs


def test_accepted_offer_moves_goods_and_growth_decides() -> None:
    env = _env()
    done, _ = env.step("Let us trade. \\boxed{[Offer: 3 Wood -> 2 Gold]}")
    assert not done and env.pending is not None
    env.step("\\boxed{Accept}")
    assert env.inventory == [[7, 12], [13, 8]]
    assert env.gain(0) == -15 + 30 and env.gain(1) == 45 - 10
    for _ in range(8):
        env.step("[Deny]")
    rewards, info = env.close()
    assert info["turns"] == 10 and rewards == {1: 1.0, 0: -1.0}  # P1 grew 35 > 15
    assert info["value_change"] == {0: 15, 1: 35}


def test_no_trade_is_a_draw_after_ten_turns() -> None:
    env = _env()
    for _ in range(10):
        done, _ = env.step("[Deny]")
    assert done
    assert env.close()[0] == {0: 0.0, 1: 0.0}


def test_new_offer_replaces_pending_one() -> None:
    env = _env()
    env.step("[Offer: 3 Wood -> 2 Gold]")
    env.step("counter: \\boxed{[offer: 1 gold -> 4 wood]} ok?")
    assert env.pending.proposer == 1 and env.pending.give == 1 and env.pending.get == 4
    env.step("\\boxed{[Accept]}")
    assert env.inventory == [[6, 11], [14, 9]]


@pytest.mark.parametrize(
    ("action", "reason"),
    [
        ("\\boxed{[Accept]}", "no offer is pending"),
        ("\\boxed{[Offer: 11 Wood -> 1 Gold]}", "has fewer"),
        ("\\boxed{[Offer: 1 Wood -> 11 Gold]}", "opponent has fewer"),
        ("\\boxed{[Offer: 3 Wood -> 2 Wood]}", "malformed"),
        ("\\boxed{[Offer: three Wood -> 2 Gold]}", "malformed"),
        ("\\boxed{[Offer: 0 Wood -> 2 Gold]}", "malformed"),
        ("\\boxed{hello}", "no [Offer"),
        ("[Offer: 3 wood->2 gold]", "no \\boxed{}"),  # not canonical and no box in strict mode
    ],
)
def test_invalid_negotiation_moves(action: str, reason: str) -> None:
    env = _env()
    done, info = env.step(action)
    assert done and info["invalid_move"] and reason in info["reason"]
    assert env.close()[1]["invalid_player"] == 0


def test_parse_token_takes_the_last_token_and_bare_words() -> None:
    assert parse_token("[Deny] then [Accept]") == "Accept"
    assert parse_token("Offer: 2 Gold -> 1 Wood") == "Offer: 2 Gold -> 1 Wood"
    assert parse_token("accept") == "accept"
    assert parse_token("maybe later") is None


def test_every_listed_legal_action_is_accepted() -> None:
    env = _env()
    env.step("[Offer: 2 Wood -> 1 Gold]")
    legal = env.legal_actions()
    assert legal[:2] == ["[Accept]", "[Deny]"] and len(legal) == 2 + 2 * 100
    for action in legal[::37]:
        e = _env()
        e.step("[Offer: 2 Wood -> 1 Gold]")
        done, info = e.step(action)
        assert not info.get("invalid_move")

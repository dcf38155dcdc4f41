"""The game registry: ids, lazy factories, user errors."""

from __future__ import annotations

import pytest

from runkit.errors import UserError
from spiral.games import list_env_ids, make, register
from spiral.games.kuhn_poker import KuhnPoker, KuhnPokerV1
from spiral.games.registry import _REGISTRY
from spiral.games.tictactoe import TicTacToe


def test_known_ids_are_listed() -> None:
    ids = list_env_ids()
    for env_id in [
        "TicTacToe-v0",
        "KuhnPoker-v1",
        "KuhnPoker-v2",
        "SimpleNegotiation-v1",
        "SingleTokenGuess-v0",
    ]:
        assert env_id in ids


def test_make_builds_the_right_classes_with_options() -> None:
    assert type(make("TicTacToe-v0")) is TicTacToe
    v1, v2 = make("KuhnPoker-v1"), make("KuhnPoker-v2", rounds=1)
    assert type(v1) is KuhnPokerV1 and v1.rounds == 5
    assert type(v2) is KuhnPoker and v2.rounds == 1 and v2.env_id == "KuhnPoker-v2"
    assert make("KuhnPoker-v2").rounds == 5
    assert make("TicTacToe-v0", parse_mode="lenient").parse_mode == "lenient"


def test_unknown_id_lists_known_ones() -> None:
    with pytest.raises(UserError, match="KuhnPoker-v2.*textarena/<EnvId>"):
        make("Chess-v9")


def test_bad_options_are_user_errors() -> None:
    with pytest.raises(UserError, match="bad option"):
        make("TicTacToe-v0", board_size=4)
    with pytest.raises(UserError, match="parse_mode"):
        make("TicTacToe-v0", parse_mode="fuzzy")
    with pytest.raises(UserError, match="invalid_penalty"):
        make("TicTacToe-v0", invalid_penalty="harsh")
    with pytest.raises(UserError, match="rounds must be an integer from 1"):
        make("KuhnPoker-v2", rounds=0)
    with pytest.raises(UserError, match="max_turns"):
        make("SimpleNegotiation-v1", max_turns=0)
    with pytest.raises(UserError, match="num_players"):
        make("TicTacToe-v0").reset(num_players=3)


@pytest.mark.parametrize(
    ("env_id", "options", "message"),
    [
        ("KuhnPoker-v2", {"rounds": 3_000_000}, "rounds must be an integer from 1 to 100, got 3000000"),
        ("KuhnPoker-v1", {"rounds": "5"}, "rounds must be an integer from 1 to 100, got '5'"),
        ("KuhnPoker-v2", {"rounds": 2.5}, "rounds must be an integer"),
        ("KuhnPoker-v2", {"rounds": True}, "rounds must be an integer"),
        ("SimpleNegotiation-v1", {"start": 1000}, "start must be an integer from 0 to 50, got 1000"),
        ("SimpleNegotiation-v1", {"start": -1}, "start must be an integer from 0 to 50"),
        ("SimpleNegotiation-v1", {"start": "10"}, "start must be an integer"),
        ("SimpleNegotiation-v1", {"max_turns": 10**9}, "max_turns must be an integer from 1 to 100"),
        ("SimpleNegotiation-v1", {"values": [[5, 15]]}, "values must be two \\[Wood, Gold\\] pairs"),
        ("SimpleNegotiation-v1", {"values": 7}, "values must be two"),
        (
            "SimpleNegotiation-v1",
            {"values": [[5, -1], [1, 1]]},
            "each value must be an integer from 0 to 1000",
        ),
        ("SimpleNegotiation-v1", {"values": [[5, "x"], [1, 1]]}, "each value must be an integer"),
    ],
)
def test_game_options_out_of_range_are_one_line_errors(env_id: str, options: dict, message: str) -> None:
    with pytest.raises(UserError, match=message) as err:
        make(env_id, **options)
    assert "\n" not in str(err.value) and env_id in str(err.value)


def test_game_options_at_their_bounds_are_accepted() -> None:
    kuhn = make("KuhnPoker-v2", rounds=100)
    kuhn.reset(seed=0)
    neg = make("SimpleNegotiation-v1", start=50, max_turns=100, values=[[0, 1000], [1000, 0]])
    neg.reset(seed=0)
    assert kuhn.max_turns == 300 and neg.values == ((0, 1000), (1000, 0))
    assert len(neg.legal_actions()) == 1 + 2 * 50 * 50  # [Deny] and every offer


def test_register_callable_and_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(_REGISTRY, "Dummy-v0", "spiral.games.tictactoe:TicTacToe")
    assert make("Dummy-v0").env_id == "Dummy-v0"
    monkeypatch.delitem(_REGISTRY, "Dummy-v0")
    register("Dummy-v0", lambda **kw: TicTacToe(**kw))
    try:
        assert isinstance(make("Dummy-v0"), TicTacToe)
        with pytest.raises(ValueError, match="already registered"):
            register("Dummy-v0", "spiral.games.tictactoe:TicTacToe")
        register("Dummy-v0", "spiral.games.nowhere:Nothing", overwrite=True)
        with pytest.raises(UserError, match="cannot be imported"):
            make("Dummy-v0")
    finally:
        _REGISTRY.pop("Dummy-v0", None)


def test_register_rejects_malformed_paths() -> None:
    with pytest.raises(ValueError, match="module:Class"):
        register("Bad-v0", "spiral.games.tictactoe.TicTacToe")

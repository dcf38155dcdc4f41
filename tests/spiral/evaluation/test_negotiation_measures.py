"""Negotiation measures in game evaluations: trades counted by the game, deal rate, value change, lead and the
share of the created value captured."""

from __future__ import annotations

import pytest

from spiral.agents import make_agent
from spiral.evaluation.games import GameResult, _deal, deal_block, format_games, metric_rows, summarize_games
from spiral.evaluation.match import play_game
from spiral.games import make


def _result(seat: int, trades: int, mine: float, theirs: float) -> GameResult:
    outcome = "win" if mine - theirs > 0 else "loss" if mine < theirs else "draw"
    return GameResult("SimpleNegotiation-v1", "minimax", seat, 0, outcome, 0.0, 10, 5, False, False, "",
                      deal={"trades": trades, "value_change": mine, "opponent_value_change": theirs})  # fmt: skip


def test_deal_block_by_hand() -> None:
    rs = [
        _result(0, 1, 30.0, 10.0),
        _result(1, 2, 0.0, 20.0),
        _result(0, 0, 0.0, 0.0),
        _result(1, 0, 0.0, 0.0),
    ]
    d = deal_block(rs)
    assert d["deal_rate"] == 0.5 and d["deal_ci"][0] < 0.5 < d["deal_ci"][1]
    assert d["mean_value_change"] == pytest.approx(7.5) and d["mean_lead"] == pytest.approx(0.0)
    assert d["value_captured"] == pytest.approx(30 / 60)
    assert deal_block([_result(0, 1, -10.0, 5.0)])["value_captured"] is None  # no value created
    summary = {"SimpleNegotiation-v1 vs minimax": summarize_games(rs)}
    assert "deals 0.500" in format_games(summary) and "value captured 0.500" in format_games(summary)
    assert metric_rows(summary)["eval/SimpleNegotiation-v1/minimax/deal_rate"] == 0.5


def test_trades_and_value_changes_come_from_the_game() -> None:
    env = make("SimpleNegotiation-v1", start=4, max_turns=6)
    heuristic = make_agent("heuristic", "SimpleNegotiation-v1", seed=0)
    rand = make_agent("random", "SimpleNegotiation-v1", seed=1)
    seen_trade = False
    for g in range(20):
        play_game(env, [heuristic, rand], seed=g)
        _, info = env.close()
        d = _deal(info, 0)
        assert d["trades"] == sum(line.endswith("(trade done)") for line in env.log)
        assert (d["value_change"], d["opponent_value_change"]) == (env.gain(0), env.gain(1))
        assert d["trades"] > 0 or env.gain(0) == env.gain(1) == 0
        seen_trade |= d["trades"] > 0
    assert seen_trade
    assert _deal({"outcome": {}}, 0) == {}  # other games carry no deal

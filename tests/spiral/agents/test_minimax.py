"""Minimax plays Tic-Tac-Toe perfectly."""

from __future__ import annotations

import pytest

from spiral.agents.minimax import MinimaxAgent, best_moves, solve
from spiral.agents.random_agent import RandomAgent
from spiral.evaluation.match import play_match
from spiral.games import make


def test_game_value_is_a_draw() -> None:
    assert solve(" " * 9) == 0


def test_takes_a_win_and_blocks_a_loss() -> None:
    assert best_moves("XX OO    ") == [2]  # X to move: win now
    assert best_moves("OO X    X") == [2]  # X to move: block O's row (X has no immediate win)


@pytest.mark.parametrize("seat", [0, 1])
def test_never_loses_to_random(seat: int) -> None:
    agents = [RandomAgent(seed=1), RandomAgent(seed=1)]
    agents[seat] = MinimaxAgent(seed=2)
    records = play_match(make("TicTacToe-v0"), agents, games=1000, seed=seat)
    assert all(r.outcome[seat] != "loss" for r in records)
    assert sum(r.outcome[seat] == "win" for r in records) > 700


def test_self_play_is_always_a_draw() -> None:
    records = play_match(make("TicTacToe-v0"), [MinimaxAgent(0), MinimaxAgent(1)], games=50)
    assert all(r.outcome == {0: "draw", 1: "draw"} for r in records)


def test_reads_the_board_from_the_observation_without_env() -> None:
    env = make("TicTacToe-v0")
    env.reset()
    for move in ["[0]", "[4]", "[1]"]:
        env.step(move)
    _, obs = env.get_observation()
    assert MinimaxAgent(0).act(obs, env.legal_actions()) == "[2]"  # O must block the top row

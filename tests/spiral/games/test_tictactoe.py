"""TicTacToe-v0: differential test against OpenSpiel, exact random-play outcome rates, rules."""

from __future__ import annotations

import random
from fractions import Fraction
from functools import cache

import pyspiel
import pytest

from spiral.evaluation.stats import wilson_interval
from spiral.games import make
from spiral.games.base import EVAL_PENALTY
from spiral.games.tictactoe import EMPTY, board_from_observation, winner_of


def test_random_playouts_agree_with_openspiel() -> None:
    game = pyspiel.load_game("tic_tac_toe")
    env = make("TicTacToe-v0")
    rng = random.Random(0)
    for g in range(2000):
        env.reset(seed=g)
        state = game.new_initial_state()
        done = False
        while not done:
            player, _ = env.get_observation()
            assert player == state.current_player()
            assert [int(a[1:-1]) for a in env.legal_actions()] == state.legal_actions()
            action = rng.choice(env.legal_actions())
            done, _ = env.step(action)
            state.apply_action(int(action[1:-1]))
            assert done == state.is_terminal()
        rewards, info = env.close()
        assert [rewards[0], rewards[1]] == state.returns()
        assert info["invalid_player"] is None


@cache
def _exact(board: str) -> tuple[Fraction, Fraction, Fraction]:
    """P(X wins), P(O wins), P(draw) under uniform random play from `board`."""
    w = winner_of(board)
    if w is not None:
        return (
            (Fraction(1), Fraction(0), Fraction(0)) if w == "X" else (Fraction(0), Fraction(1), Fraction(0))
        )
    empty = [i for i in range(9) if board[i] == EMPTY]
    if not empty:
        return Fraction(0), Fraction(0), Fraction(1)
    mark = "X" if len(empty) % 2 == 1 else "O"
    totals = [Fraction(0)] * 3
    for i in empty:
        for k, p in enumerate(_exact(board[:i] + mark + board[i + 1 :])):
            totals[k] += p / len(empty)
    return tuple(totals)


def test_random_vs_random_outcome_rates_match_exact_values() -> None:
    exact = _exact(EMPTY * 9)
    assert sum(exact) == 1
    assert 0.58 < exact[0] < 0.59 and 0.28 < exact[1] < 0.29  # the paper's ~58 % / ~30 % / ~13 %
    env, rng, n = make("TicTacToe-v0"), random.Random(1), 4000
    counts = [0, 0, 0]
    for g in range(n):
        env.reset(seed=g)
        done = False
        while not done:
            done, _ = env.step(rng.choice(env.legal_actions()))
        rewards, _ = env.close()
        counts[0 if rewards[0] > 0 else 1 if rewards[1] > 0 else 2] += 1
    for k in range(3):
        lo, hi = wilson_interval(counts[k], n, z=3.29)  # 99.9 % interval
        assert lo <= float(exact[k]) <= hi


def _play(env, moves: list[str]) -> tuple[bool, dict]:
    out = (False, {})
    for m in moves:
        out = env.step(m)
    return out


def test_win_draw_and_reasons() -> None:
    env = make("TicTacToe-v0")
    env.reset()
    done, info = _play(env, ["[0]", "[3]", "[1]", "[4]", "\\boxed{2}"])
    assert done and "three in a row" in info["reason"]
    rewards, info = env.close()
    assert rewards == {0: 1.0, 1: -1.0} and info["winner"] == 0 and info["turns"] == 5
    env.reset()
    done, _ = _play(env, [f"[{c}]" for c in (0, 1, 2, 4, 3, 5, 7, 6, 8)])
    rewards, info = env.close()
    assert done and rewards == {0: 0.0, 1: 0.0} and info["outcome"] == {0: "draw", 1: "draw"}


@pytest.mark.parametrize("bad", ["\\boxed{4}", "[9]", "\\boxed{centre}", "4"])
def test_invalid_move_ends_game_with_penalty(bad: str) -> None:
    env = make("TicTacToe-v0", invalid_penalty=EVAL_PENALTY)
    env.reset()
    env.step("[4]")
    done, info = env.step(bad)  # occupied, off-board, not a cell, no box
    assert done and info["invalid_move"] and info["reason"]
    rewards, final = env.close()
    assert rewards == {1: -1.0, 0: 1.0} and final["invalid_player"] == 1


def test_default_penalty_is_the_training_one() -> None:
    env = make("TicTacToe-v0")
    env.reset()
    env.step("no idea")
    assert env.close()[0] == {0: -1.5, 1: 0.0}


def test_lenient_mode_accepts_a_named_cell() -> None:
    env = make("TicTacToe-v0", parse_mode="lenient")
    env.reset()
    done, info = env.step("I take the centre, cell 4.")
    assert not done and env.board[4] == "X"


def test_observation_shows_role_board_and_legal_moves() -> None:
    env = make("TicTacToe-v0")
    env.reset()
    env.step("[4]")
    player, obs = env.get_observation()
    assert player == 1 and "You are Player 1" in obs and "You play O" in obs
    assert "Your legal actions: [0] [1] [2] [3] [5] [6] [7] [8]" in obs
    assert board_from_observation(obs) == "    X    "


def test_step_after_the_end_raises() -> None:
    env = make("TicTacToe-v0")
    env.reset()
    env.step("nonsense")
    with pytest.raises(RuntimeError):
        env.step("[0]")

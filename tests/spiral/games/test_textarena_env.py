"""The TextArena adapter on real TextArena two-player games (offline, no downloads)."""

from __future__ import annotations

import random

import pytest

from runkit.errors import UserError
from spiral.games import make
from spiral.games.textarena_env import legal_from_text

pytest.importorskip("textarena")


@pytest.fixture(scope="module")
def ttt():
    return make("textarena/TicTacToe-v0", invalid_penalty="eval")


def test_random_games_finish_with_zero_sum_rewards(ttt) -> None:
    rng = random.Random(0)
    outcomes = set()
    for seed in range(20):
        ttt.reset(seed=seed)
        done = False
        while not done:
            player, obs = ttt.get_observation()
            assert f"Player {player}" in obs
            legal = ttt.legal_actions()
            assert legal and all(a.startswith("[") for a in legal)
            done, info = ttt.step(rng.choice(legal))
            assert not info.get("invalid_move")
        rewards, info = ttt.close()  # TextArena >= 0.6.9 returns (rewards, info); we return the same shape
        assert rewards[0] == -rewards[1] and info["invalid_player"] is None
        outcomes.add(info["winner"])
    assert len(outcomes) >= 2


def test_reset_starts_a_clean_observation(ttt) -> None:
    ttt.reset(seed=0)
    first = ttt.get_observation()[1]
    ttt.step("[4]")
    ttt.step("[0]")
    ttt.reset(seed=0)  # TextArena's own wrapper would still show the last game's moves
    assert ttt.get_observation()[1] == first and "[Player 0]" not in first


def test_boxed_answers_are_parsed(ttt) -> None:
    ttt.reset(seed=1)
    done, _ = ttt.step("Centre is best: \\boxed{4}")
    assert not done and "[4]" not in ttt.legal_actions()


def test_textarena_invalid_move_ends_the_game_with_our_penalty(ttt) -> None:
    ttt.reset(seed=1)
    ttt.step("\\boxed{[4]}")
    done, info = ttt.step("\\boxed{[4]}")  # occupied: TextArena would allow a retry, we do not
    assert done and info["invalid_move"]
    rewards, final = ttt.close()
    assert rewards == {1: -1.0, 0: 1.0} and final["invalid_player"] == 1


def test_missing_box_is_invalid_in_strict_mode(ttt) -> None:
    ttt.reset(seed=2)
    done, info = ttt.step("I play 4")
    assert done and info["invalid_move"] and "boxed" in info["reason"]


def test_kuhn_poker_from_textarena() -> None:
    env = make("textarena/KuhnPoker-v0", parse_mode="lenient")
    env.reset(seed=3)
    assert env.legal_actions() == ["[check]", "[bet]"]
    env.step("\\boxed{bet}")
    assert env.legal_actions() == ["[fold]", "[call]"]


def test_unknown_textarena_id() -> None:
    with pytest.raises(UserError, match="unknown TextArena game"):
        make("textarena/NoSuchGame-v0")


def test_legal_from_text_reads_the_last_listing() -> None:
    text = "For example, '[4]' places...\nAvailable Moves: '[0]', '[1]'\n"
    assert legal_from_text(text) == ["[0]", "[1]"]
    assert legal_from_text("nothing") == []

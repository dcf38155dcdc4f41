"""Kuhn Poker v2 (standard) against OpenSpiel, and v1 (the paper's variant) with its quirks."""

from __future__ import annotations

import random

import pyspiel
import pytest

from runkit.errors import UserError
from spiral.games import make
from spiral.games.kuhn_poker import CARDS, infoset_from_observation, infoset_observation

TO_OPENSPIEL = {"[check]": 0, "[fold]": 0, "[bet]": 1, "[call]": 1}


def test_one_round_random_playouts_agree_with_openspiel() -> None:
    game = pyspiel.load_game("kuhn_poker")
    env = make("KuhnPoker-v2", rounds=1)
    rng = random.Random(0)
    for g in range(3000):
        env.reset(seed=g)
        state = game.new_initial_state()
        for card in env.deals[0]:  # same deal: OpenSpiel deals player 0 first
            state.apply_action(card)
        done = False
        while not done:
            player, obs = env.get_observation()
            assert player == state.current_player()
            assert [TO_OPENSPIEL[a] for a in env.legal_actions()] == state.legal_actions()
            os_key = state.information_state_string(player)
            assert env.infoset_key(player) == CARDS[int(os_key[0])] + os_key[1:]
            assert infoset_from_observation(obs) == env.infoset_key(player)
            action = rng.choice(env.legal_actions())
            done, _ = env.step(action)
            state.apply_action(TO_OPENSPIEL[action])
            assert done == state.is_terminal()
        rewards, info = env.close()
        returns = state.returns()
        assert [info["chips"][0], info["chips"][1]] == returns
        assert rewards == {0: returns[0], 1: returns[1]}  # chip rewards: exactly OpenSpiel's returns


def test_five_rounds_are_five_openspiel_games_with_alternating_opener() -> None:
    game = pyspiel.load_game("kuhn_poker")
    env = make("KuhnPoker-v2")
    rng = random.Random(1)
    for g in range(300):
        env.reset(seed=g)
        while not env.done:
            env.step(rng.choice(env.legal_actions()))
        chips = [0.0, 0.0]
        for i, record in enumerate(env.close()[1]["rounds"]):
            opener = record["opener"]
            assert opener == i % 2
            state = game.new_initial_state()  # OpenSpiel's player 0 is this round's opener
            state.apply_action(env.deals[i][opener])
            state.apply_action(env.deals[i][1 - opener])
            for action in record["actions"]:
                state.apply_action(TO_OPENSPIEL[action])
            chips[opener] += state.returns()[0]
            chips[1 - opener] += state.returns()[1]
        assert chips == [env.chips[0], env.chips[1]]


def _play_round(env, actions: list[str]) -> None:
    for a in actions:
        env.step(a)


def test_v2_bet_grows_pot_and_more_chips_win() -> None:
    env = make("KuhnPoker-v2", rounds=2)
    env.reset(seed=0)
    env.deals[:] = [(2, 0), (2, 1)]  # P0 holds K both rounds
    _play_round(env, ["[bet]", "[call]"])  # P0 opens round 1, wins 2
    assert env.chips == [2, -2] and env.player == 1  # P1 opens round 2
    _play_round(env, ["[bet]", "[fold]"])  # P0 folds K: loses 1
    rewards, info = env.close()
    assert info["chips"] == {0: 1, 1: -1} and rewards == {0: 1.0, 1: -1.0} and info["winner"] == 0


def test_reward_option_pays_chips_or_the_outcome() -> None:
    deal_and_play = [(2, 0)], ["[bet]", "[call]"]  # P0's K against J, bet called: P0 wins 2 chips
    paid = {}
    for reward in ("chips", "outcome"):
        env = make("KuhnPoker-v2", rounds=1, reward=reward)
        env.reset(seed=0)
        env.deals[:] = deal_and_play[0]
        _play_round(env, deal_and_play[1])
        paid[reward], info = env.close()
        assert info["winner"] == 0 and info["chips"] == {0: 2, 1: -2}
    assert paid == {"chips": {0: 2.0, 1: -2.0}, "outcome": {0: 1.0, 1: -1.0}}
    assert make("KuhnPoker-v2").reward == "chips" and make("KuhnPoker-v1").reward == "outcome"
    with pytest.raises(UserError, match="reward must be one of chips, outcome"):
        make("KuhnPoker-v2", reward="pot")


def test_v2_equal_chips_is_a_draw() -> None:
    env = make("KuhnPoker-v2", rounds=2)
    env.reset(seed=0)
    env.deals[:] = [(2, 0), (0, 2)]
    _play_round(env, ["[check]", "[check]"])  # P0 +1
    _play_round(env, ["[check]", "[check]"])  # P1 +1
    rewards, info = env.close()
    assert rewards == {0: 0.0, 1: 0.0} and info["winner"] is None


def test_v1_quirks_flat_pot_last_round_decides_player1_opens() -> None:
    env = make("KuhnPoker-v1")
    env.reset(seed=3)
    assert env.rounds == 5 and env.player == 1
    env.deals[:] = [(2, 0)] * 4 + [(0, 2)]
    for r in range(4):  # P0 wins four called bets, each worth only 1 chip
        opener = env.player
        assert opener == (1 + r) % 2
        if opener == 0:
            _play_round(env, ["[bet]", "[call]"])
        else:
            _play_round(env, ["[check]", "[bet]", "[call]"])
    assert env.chips == [4, -4]
    _play_round(env, ["[check]", "[check]"])  # P1 wins only the last round
    rewards, info = env.close()
    assert info["chips"] == {0: 3, 1: -3} and rewards == {1: 1.0, 0: -1.0}


@pytest.mark.parametrize("env_id", ["KuhnPoker-v1", "KuhnPoker-v2"])
def test_seed_fixes_the_deal(env_id: str) -> None:
    a, b = make(env_id), make(env_id)
    a.reset(seed=42)
    b.reset(seed=42)
    assert a.deals == b.deals and all(x != y for x, y in a.deals)


def test_observation_lists_history_chips_card_and_actions() -> None:
    env = make("KuhnPoker-v2", rounds=3)
    env.reset(seed=0)
    env.deals[:] = [(2, 0), (1, 0), (0, 1)]
    _play_round(env, ["[bet]", "[call]"])
    env.step("\\boxed{check}")
    player, obs = env.get_observation()
    assert player == 0
    assert "You are Player 0" in obs and "Your card: Q" in obs and "Round 2 of 3" in obs
    assert "showdown K (P0) vs J (P1)" in obs and "Chips so far: you +2, opponent -2" in obs
    assert "This round: P1 [check]" in obs and obs.endswith("Your legal actions: [check] [bet]")


def test_folded_cards_stay_hidden_in_history() -> None:
    env = make("KuhnPoker-v2", rounds=2)
    env.reset(seed=0)
    env.deals[:] = [(2, 1), (0, 1)]
    _play_round(env, ["[bet]", "[fold]"])
    _, obs = env.get_observation()
    assert "Round 1: P0 [bet], P1 [fold]; fold; Player 0 won 1 chip(s)." in obs
    assert "showdown" not in obs.split("Round 1:")[1].split("\n")[0]


def test_infoset_observations_cover_the_twelve_information_sets() -> None:
    seen = set()
    for card in CARDS:
        for hist, legal in [
            ("", "[check] [bet]"),
            ("p", "[check] [bet]"),
            ("b", "[fold] [call]"),
            ("pb", "[fold] [call]"),
        ]:
            player, obs, actions = infoset_observation(card + hist)
            assert player == len(hist) % 2 and " ".join(actions) == legal
            assert infoset_from_observation(obs) == card + hist
            seen.add(obs)
    assert len(seen) == 12


def test_invalid_action_in_kuhn() -> None:
    env = make("KuhnPoker-v2")
    env.reset(seed=0)
    done, info = env.step("\\boxed{call}")  # nothing to call yet
    assert done and info["invalid_move"]
    rewards, final = env.close()
    assert rewards == {0: -1.5, 1: 0.0} and final["invalid_player"] == 0  # the innocent seat gets 0

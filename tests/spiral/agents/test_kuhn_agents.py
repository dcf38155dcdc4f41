"""Kuhn policies: Nash family, exact best responses (checked against OpenSpiel), agents in play."""

from __future__ import annotations

import random

import pyspiel
import pytest
from open_spiel.python.algorithms.best_response import BestResponsePolicy

from runkit.errors import UserError
from spiral.agents.kuhn import (
    KEYS,
    best_response,
    best_response_agent,
    exploitability,
    nash_agent,
    nash_policy,
    policy_value,
    uniform_policy,
)
from spiral.agents.random_agent import RandomAgent
from spiral.evaluation.exploitability import openspiel_exploitability
from spiral.evaluation.match import play_match
from spiral.evaluation.stats import mean_interval
from spiral.games import make


def _random_policy(seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    return {k: rng.random() for k in KEYS}


@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.25, 1 / 3])
def test_nash_family_has_zero_exploitability_and_value_minus_one_eighteenth(alpha: float) -> None:
    policy = nash_policy(alpha)
    assert exploitability(policy) < 1e-9
    assert abs(policy_value(policy) + 1 / 18) < 1e-9


def test_nash_alpha_out_of_range() -> None:
    with pytest.raises(UserError):
        nash_policy(0.5)


def test_uniform_exploitability_is_eleven_twentyfourths() -> None:
    assert abs(exploitability(uniform_policy()) - 11 / 24) < 1e-12


@pytest.mark.parametrize("seed", range(8))
def test_exploitability_matches_openspiel_on_random_policies(seed: int) -> None:
    policy = _random_policy(seed)
    assert abs(exploitability(policy) - openspiel_exploitability(policy)) < 1e-9


class _Tabular:
    """Minimal OpenSpiel policy object from our key -> P(bet) table."""

    def __init__(self, policy: dict[str, float]) -> None:
        self.policy = policy

    def action_probabilities(self, state, player_id=None) -> dict[int, float]:
        key = state.information_state_string()
        p = self.policy["JQK"[int(key[0])] + key[1:]]
        return {0: 1 - p, 1: p}


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("player", [0, 1])
def test_best_response_value_matches_openspiel(seed: int, player: int) -> None:
    policy = _random_policy(seed)
    game = pyspiel.load_game("kuhn_poker")
    expected = BestResponsePolicy(game, player, _Tabular(policy)).value(game.new_initial_state())
    assert abs(best_response(policy, player)[0] - expected) < 1e-9


@pytest.mark.parametrize(("seat", "value"), [(0, 0.5), (1, 5 / 12)])
def test_best_response_agent_earns_its_value_against_random(seat: int, value: float) -> None:
    assert abs(best_response(uniform_policy(), seat)[0] - value) < 1e-12
    env = make("KuhnPoker-v2", rounds=1)
    agents = [RandomAgent(3), RandomAgent(4)]
    agents[seat] = best_response_agent(seed=5)
    chips = []
    rng = random.Random(seat)
    for _ in range(6000):
        env.reset(seed=rng.getrandbits(32))
        while not env.done:
            player, obs = env.get_observation()
            env.step(agents[player].act(obs, env.legal_actions(), env))
        chips.append(env.close()[1]["chips"][seat])
    mean, lo, hi = mean_interval(chips, z=3.29)
    assert lo <= value <= hi


def test_nash_agent_beats_random_over_five_rounds() -> None:
    records = play_match(make("KuhnPoker-v2"), [nash_agent(0.2, seed=1), RandomAgent(2)], games=400, seed=0)
    mean, lo, _ = mean_interval([r.rewards[0] for r in records])
    assert lo > 0


def test_policy_agent_reads_observation_without_env() -> None:
    env = make("KuhnPoker-v2", rounds=1)
    env.reset(seed=0)
    env.deals[0] = (2, 0)
    _, obs = env.get_observation()
    agent = best_response_agent()  # vs random: the opener checks a King to trap bluffs
    assert agent.act(obs, env.legal_actions()) == "[check]"
    env.step("[check]")
    env.step("[bet]")
    _, obs = env.get_observation()
    assert agent.act(obs, env.legal_actions()) == "[call]"

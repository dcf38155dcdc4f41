"""The Simple Negotiation minimax agent: its optimal actions equal exhaustive search on small games, it never
loses, it draws against itself, and it punishes an agent that accepts bad trades."""

from __future__ import annotations

import copy
import random

import pytest

from spiral.agents import make_agent
from spiral.agents.negotiation_minimax import NegotiationMinimaxAgent, action_values, lead, optimal_actions
from spiral.evaluation.match import play_game
from spiral.games import make


def _value(env, memo: dict) -> int:
    """Exhaustive minimax value for the player to move (+1 win, 0 draw, -1 loss)."""
    if env.done:
        rewards, _ = env.close()
        raise AssertionError(rewards)
    best = -2
    for a in env.legal_actions():
        best = max(best, _after(env, a, memo))
    return best


def _after(env, action: str, memo: dict) -> int:
    """Value for the player to move of playing `action`."""
    key = (tuple(map(tuple, env.inventory)), env.pending, env.turn, env.player, action)
    if key in memo:
        return memo[key]
    child = copy.deepcopy(env)
    p = child.player
    done, _ = child.step(action)
    if done:
        rewards, _ = child.close()
        v = (rewards[p] > rewards[1 - p]) - (rewards[p] < rewards[1 - p])
    else:
        v = -_value(child, memo)
    memo[key] = v
    return v


@pytest.mark.parametrize("values", [((5, 15), (15, 5)), ((3, 7), (6, 2)), ((4, 4), (9, 1))])
def test_optimal_actions_equal_exhaustive_search(values) -> None:
    rng = random.Random(0)
    memo: dict = {}
    env = make("SimpleNegotiation-v1", start=2, max_turns=4, values=values)
    checked = 0
    for seed in range(6):
        env.reset(num_players=2, seed=seed)
        while not env.done:
            legal = env.legal_actions()
            scores = {a: _after(env, a, memo) for a in legal}
            best = max(scores.values())
            assert action_values(env, legal) == scores
            assert set(optimal_actions(env, legal)) == {a for a, v in scores.items() if v == best}
            sign = (lead(env, env.player) > 0) - (lead(env, env.player) < 0)
            assert best == sign or (env.pending is not None and best == scores["[Accept]"] > sign)
            checked += 1
            env.step(rng.choice(legal))
    assert checked >= 20


def test_minimax_draws_itself_and_never_loses_to_random() -> None:
    kw = {"start": 4, "max_turns": 6}
    a, b = NegotiationMinimaxAgent(1), NegotiationMinimaxAgent(2)
    rand = make_agent("random", "SimpleNegotiation-v1", seed=3)
    env = make("SimpleNegotiation-v1", **kw)
    outcomes = []
    for g in range(40):
        rewards = play_game(env, [a, b], seed=g).rewards
        assert rewards[0] == rewards[1]
        seats = [a, rand] if g % 2 == 0 else [rand, a]
        rewards = play_game(env, seats, seed=g).rewards
        me = g % 2
        assert rewards[me] >= rewards[1 - me]
        outcomes.append(rewards[me] > rewards[1 - me])
    assert sum(outcomes) >= 5  # random accepts trades that put it behind


def test_optimal_spec_is_the_minimax_agent_and_needs_the_env() -> None:
    agent = make_agent("optimal", "SimpleNegotiation-v1", seed=0)
    assert isinstance(agent, NegotiationMinimaxAgent)
    with pytest.raises(TypeError, match="needs the SimpleNegotiation env"):
        agent.act("observation", ["[Deny]"])

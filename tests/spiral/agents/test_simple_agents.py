"""Random, human and negotiation-heuristic agents."""

from __future__ import annotations

import io

import pytest

from runkit.errors import UserError
from spiral.agents.human import HumanAgent
from spiral.agents.negotiation_heuristic import (
    NegotiationHeuristicAgent,
    trade_gain,
    view_from_env,
    view_from_observation,
)
from spiral.agents.random_agent import RandomAgent
from spiral.evaluation.match import play_match
from spiral.evaluation.stats import mean_interval
from spiral.games import make


def test_random_agent_is_seeded_and_legal() -> None:
    legal = ["[0]", "[4]", "[8]"]
    a, b = RandomAgent(7), RandomAgent(7)
    picks = [a.act("", legal) for _ in range(50)]
    assert picks == [b.act("", legal) for _ in range(50)] and set(picks) == set(legal)
    assert RandomAgent(0).act("", []) == ""


def test_human_agent_reprompts_until_legal() -> None:
    lines = iter(["what?", "BET"])
    out = io.StringIO()
    agent = HumanAgent(input_fn=lambda prompt: next(lines), out=out)
    assert agent.act("You are Player 0", ["[check]", "[bet]"]) == "[bet]"
    assert "Legal actions: [check] [bet]" in out.getvalue() and "Not a legal action" in out.getvalue()


def test_human_agent_passes_free_form_tokens_and_stops_on_eof() -> None:
    agent = HumanAgent(input_fn=lambda prompt: "[Offer: 1 Wood -> 1 Gold]", out=io.StringIO())
    assert agent.act("obs", ["[Deny]"]) == "[Offer: 1 Wood -> 1 Gold]"

    def eof(prompt: str) -> str:
        raise EOFError

    with pytest.raises(UserError, match="input ended"):
        HumanAgent(input_fn=eof, out=io.StringIO()).act("obs", ["[bet]"])


def test_heuristic_accepts_profitable_offers_only() -> None:
    env = make("SimpleNegotiation-v1")
    env.reset()
    env.step("[Offer: 3 Wood -> 2 Gold]")  # P1 (Wood 15, Gold 5) gains 45 - 10
    agent = NegotiationHeuristicAgent(seed=0)
    assert agent.act(env.get_observation()[1], env.legal_actions()) == "[Accept]"
    env.reset()
    env.step("[Offer: 1 Gold -> 5 Wood]")  # P1 would lose 75 - 5
    action = agent.act(env.get_observation()[1], env.legal_actions(), env)
    assert action.startswith("[Offer:") and action in env.legal_actions()
    env.step(action)
    env.step("[Accept]")
    assert env.gain(1) > 0  # its own proposal raises its value


def test_heuristic_view_from_env_and_observation_agree() -> None:
    env = make("SimpleNegotiation-v1")
    env.reset()
    env.step("[Offer: 2 Wood -> 1 Gold]")
    env.step("[Accept]")
    env.step("[Offer: 1 Gold -> 2 Wood]")
    player, obs = env.get_observation()
    assert view_from_env(env, player) == view_from_observation(obs)
    view = view_from_observation(obs)
    assert view.values == (15, 5) and trade_gain(view.values, *view.pending) == 1 * 5 - 2 * 15


def test_heuristic_beats_random_in_both_seats() -> None:
    for seat in (0, 1):
        agents = [RandomAgent(1), RandomAgent(2)]
        agents[seat] = NegotiationHeuristicAgent(seed=3)
        records = play_match(make("SimpleNegotiation-v1"), agents, games=300, seed=seat)
        _, lo, _ = mean_interval([r.rewards[seat] for r in records])
        assert lo > 0

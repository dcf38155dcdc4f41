"""make_agent: specs, the per-game 'optimal' opponent, LM delegation and user errors."""

from __future__ import annotations

import sys
import types

import pytest

from runkit.errors import UserError
from spiral.agents import make_agent
from spiral.agents.api_agent import ApiAgent
from spiral.agents.human import HumanAgent
from spiral.agents.kuhn import KuhnPolicyAgent
from spiral.agents.minimax import MinimaxAgent
from spiral.agents.negotiation_heuristic import NegotiationHeuristicAgent
from spiral.agents.negotiation_minimax import NegotiationMinimaxAgent
from spiral.agents.random_agent import RandomAgent


@pytest.mark.parametrize(
    ("spec", "env_id", "cls"),
    [
        ("random", "TicTacToe-v0", RandomAgent),
        ("minimax", "TicTacToe-v0", MinimaxAgent),
        ("optimal", "TicTacToe-v0", MinimaxAgent),
        ("nash", "KuhnPoker-v2", KuhnPolicyAgent),
        ("optimal", "KuhnPoker-v1", KuhnPolicyAgent),
        ("best-response", "KuhnPoker-v2", KuhnPolicyAgent),
        ("heuristic", "SimpleNegotiation-v1", NegotiationHeuristicAgent),
        ("optimal", "SimpleNegotiation-v1", NegotiationMinimaxAgent),
        ("minimax", "SimpleNegotiation-v1", NegotiationMinimaxAgent),
        ("human", "TicTacToe-v0", HumanAgent),
        ("api:gpt-test@http://127.0.0.1:8000/v1", "KuhnPoker-v2", ApiAgent),
    ],
)
def test_specs_build_the_right_agent(spec: str, env_id: str, cls: type) -> None:
    assert isinstance(make_agent(spec, env_id, seed=0), cls)


def test_options_reach_the_policy() -> None:
    agent = make_agent("nash:alpha=0.2", "KuhnPoker-v2", seed=0)
    assert agent.policy["J"] == pytest.approx(0.2) and agent.policy["K"] == pytest.approx(0.6)
    br = make_agent("best-response:vs=nash,alpha=0.1", "KuhnPoker-v2", seed=0)
    assert br.name == "best-response(vs=nash)"


def test_api_spec_parts() -> None:
    agent = make_agent("api:gemini-2.0-flash@https://example.test/v1/", "KuhnPoker-v2", api_key="k")
    assert agent.model == "gemini-2.0-flash" and agent.base_url == "https://example.test/v1"


@pytest.mark.parametrize(
    ("spec", "env_id", "message"),
    [
        ("alphago", "TicTacToe-v0", "unknown agent"),
        ("minimax", "KuhnPoker-v2", "plays only TicTacToe-v0, SimpleNegotiation-v1"),
        ("nash", "TicTacToe-v0", "plays only Kuhn"),
        ("heuristic", "KuhnPoker-v2", "plays only SimpleNegotiation"),
        ("optimal", "textarena/Chess-v0", "plays only"),
        ("nash:alpha=abc", "KuhnPoker-v2", "not a number"),
        ("nash:alpha", "KuhnPoker-v2", "key=value"),
        ("nash:alpha=0.9", "KuhnPoker-v2", "alpha"),
        ("best-response:vs=minimax", "KuhnPoker-v2", "vs="),
        ("api:model-without-url", "KuhnPoker-v2", "api:MODEL@"),
    ],
)
def test_bad_specs_are_user_errors(spec: str, env_id: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        make_agent(spec, env_id, seed=0)


def test_lm_specs_are_delegated_to_spiral_agents_lm(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    calls = []
    fake = types.ModuleType("spiral.agents.lm")
    fake.make_lm_agent = lambda spec, **kw: calls.append((spec, kw)) or "LM"
    monkeypatch.setitem(sys.modules, "spiral.agents.lm", fake)
    assert make_agent("tiny", "KuhnPoker-v2", seed=3) == "LM"
    assert make_agent(str(tmp_path), "TicTacToe-v0", seed=4, temperature=0.7) == "LM"
    assert calls == [("tiny", {"seed": 3}), (str(tmp_path), {"seed": 4, "temperature": 0.7})]


def test_missing_lm_module_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "spiral.agents.lm", None)  # import fails as if the module were absent
    with pytest.raises(UserError, match="spiral.agents.lm"):
        make_agent("smollm2-135m-instruct", "KuhnPoker-v2")

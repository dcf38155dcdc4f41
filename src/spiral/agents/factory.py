"""make_agent: build an agent from a short spec string such as 'random', 'nash:alpha=0.2' or 'api:MODEL@URL'."""

from __future__ import annotations

import importlib
import os

from runkit.errors import UserError
from spiral.agents.base import Agent

LM_NAMES = ("smollm2-135m-instruct", "tiny", "tiny-qwen3")
OPTIMAL = {"TicTacToe-v0": "minimax", "SimpleNegotiation-v1": "minimax"}
SPECS = (
    "random, optimal, minimax, nash[:alpha=A], best-response[:vs=random|nash,alpha=A], heuristic, human, api:MODEL@BASE_URL, a model folder, "
    + ", ".join(LM_NAMES)
)


def _options(text: str) -> dict[str, str]:
    """'alpha=0.2,vs=nash' -> {'alpha': '0.2', 'vs': 'nash'}."""
    out = {}
    for part in filter(None, text.split(",")):
        key, sep, value = part.partition("=")
        if not sep:
            raise UserError(f"agent option {part!r} must look like key=value")
        out[key.strip()] = value.strip()
    return out


def _float(opts: dict[str, str], key: str, default: float) -> float:
    """A float option with a clear error."""
    try:
        return float(opts.get(key, default))
    except ValueError:
        raise UserError(f"agent option {key}={opts[key]!r} is not a number") from None


def _is_kuhn(env_id: str) -> bool:
    return env_id.startswith("KuhnPoker-")


def _require(env_id: str, ok: bool, spec: str, games: str) -> None:
    if not ok:
        raise UserError(f"agent {spec!r} plays only {games}, not {env_id}")


def _kuhn_agent(name: str, opts: dict[str, str], env_id: str, seed: int | None) -> Agent:
    """nash / best-response agents."""
    from spiral.agents import kuhn

    _require(env_id, _is_kuhn(env_id), name, "Kuhn Poker")
    alpha = _float(opts, "alpha", 0.0)
    if name == "nash":
        return kuhn.nash_agent(alpha, seed)
    vs = opts.get("vs", "random")
    if vs not in ("random", "nash"):
        raise UserError(f"best-response vs={vs!r}: choose random or nash")
    target = kuhn.uniform_policy() if vs == "random" else kuhn.nash_policy(alpha)
    return kuhn.best_response_agent(target, seed, name=f"best-response(vs={vs})")


def _lm_agent(spec: str, seed: int | None, **kwargs) -> Agent:
    """Delegate to spiral.agents.lm:make_lm_agent (written separately; imported only when needed)."""
    try:
        lm = importlib.import_module("spiral.agents.lm")
    except ModuleNotFoundError as e:
        if e.name not in ("spiral.agents.lm",):
            raise
        raise UserError(
            f"language-model agents ({spec!r}) need spiral.agents.lm, which is not installed yet"
        ) from None
    return lm.make_lm_agent(spec, seed=seed, **kwargs)


def _api_agent(rest: str, **kwargs) -> Agent:
    """api:MODEL@BASE_URL."""
    from spiral.agents.api_agent import ApiAgent

    model, sep, url = rest.partition("@")
    if not sep or not model or not url.startswith(("http://", "https://")):
        raise UserError(f"api agent spec must be api:MODEL@http(s)://HOST/v1, got 'api:{rest}'")
    return ApiAgent(model, url, **kwargs)


def make_agent(spec: str, env_id: str, seed: int | None = None, **kwargs) -> Agent:
    """Build the agent `spec` for game `env_id`; kwargs go to the API / LM / human agent."""
    name, _, rest = spec.partition(":")
    if name == "optimal":
        if _is_kuhn(env_id):
            return _kuhn_agent("nash", {}, env_id, seed)
        _require(env_id, env_id in OPTIMAL, spec, ", ".join(["KuhnPoker-*", *OPTIMAL]))
        name, rest = OPTIMAL[env_id], ""
    if name == "api":
        return _api_agent(rest, **kwargs)
    if name in LM_NAMES or os.path.isdir(spec):
        return _lm_agent(spec, seed, **kwargs)
    opts = _options(rest)
    if name == "random":
        from spiral.agents.random_agent import RandomAgent

        return RandomAgent(seed)
    if name == "minimax":
        _require(env_id, env_id in OPTIMAL, spec, ", ".join(OPTIMAL))
        if env_id == "SimpleNegotiation-v1":
            from spiral.agents.negotiation_minimax import NegotiationMinimaxAgent

            return NegotiationMinimaxAgent(seed)
        from spiral.agents.minimax import MinimaxAgent

        return MinimaxAgent(seed)
    if name in ("nash", "best-response"):
        return _kuhn_agent(name, opts, env_id, seed)
    if name == "heuristic":
        from spiral.agents.negotiation_heuristic import NegotiationHeuristicAgent

        _require(env_id, env_id == "SimpleNegotiation-v1", spec, "SimpleNegotiation-v1")
        return NegotiationHeuristicAgent(seed)
    if name == "human":
        from spiral.agents.human import HumanAgent

        return HumanAgent(**kwargs)
    raise UserError(f"unknown agent {spec!r}; known: {SPECS}")

"""Opponents drawn by rating: which past checkpoint or fixed agent a game's other seat gets.

With `rollout.pool_sampling = rating` (or fixed agents in the pool, `rollout.pool_agents`) the trainer asks a
`RatedPool` for each new game's opponent. With probability `rollout.pool_prob` the game gets one of the
members, the frozen past policies of the checkpoint pool (`pool:STEP`) and the fixed agents, else it is
self-play. `uniform` draws the members alike; `rating` draws member o with weight (1 - p_o)^2, p_o the
estimated probability that the policy beats o (prioritised fictitious self-play, "hard" weighting: opponents
the policy does not beat yet come up more often). p_o is a Beta-style estimate: a prior of PRIOR_GAMES
pseudo-games at p0, plus the run's own results against o (a win 1, a draw 1/2, per game).

p0 is 1/2, or with `rollout.pool_league = league.json` (a `spiral eval league`) the league's predicted win
probability of an average league player (mean mu and sigma of the game's players) against o; the league knows
o when o's label is a league player (a fixed agent by its spec, `pool:STEP` as `RUN@STEP` of this run's name),
and then starts with LEAGUE_GAMES pseudo-games. The estimates are not kept in checkpoints (as the pool).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from spiral.agents.base import Agent

POWER = 2.0  # weight (1 - p)^POWER
PRIOR_GAMES = 2.0  # pseudo-games of the p0 = 1/2 prior
LEAGUE_GAMES = 8.0  # pseudo-games of a league prior


class PerGame(Agent):
    """One fixed agent per game id, answering for whichever game each observation comes from."""

    def __init__(self, name: str, agents: dict[str, Agent]) -> None:
        self.name, self.agents = name, agents

    def act(self, observation: str, legal_actions: list[str], env=None) -> str:
        return self.agents[env.env_id].act(observation, legal_actions, env)

    def act_batch(self, observations, legal, envs=None):
        return [self.act(o, la, e) for o, la, e in zip(observations, legal, envs, strict=True)]


def league_priors(path: str, env_ids: list[str], run_name: str) -> dict[str, float]:
    """label -> p0 from a league.json: the win probability of an average player of the league against it."""
    from spiral.evaluation.league.ratings import Ratings

    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    game = next((g for g in env_ids if g in doc.get("games", {})), None)
    if game is None:
        return {}
    table = doc["games"][game]["ratings"]
    ratings = Ratings([*table, "\x00average"], doc.get("config", {}).get("rating", "plackett-luce"))
    model = ratings.model
    for label, r in table.items():
        ratings.ratings[label] = model.rating(mu=r["mu"], sigma=r["sigma"], name=label)
    n = len(table)
    ratings.ratings["\x00average"] = model.rating(
        mu=sum(r["mu"] for r in table.values()) / n, sigma=sum(r["sigma"] for r in table.values()) / n
    )
    out = {label: ratings.win_probability("\x00average", label) for label in table}
    prefix = f"{run_name}@"
    out.update({f"pool:{label[len(prefix) :]}": p for label, p in out.items() if label.startswith(prefix)})
    return out


def rated_pool(settings, rng) -> RatedPool | None:
    """The run's RatedPool when it draws by rating or has fixed agents in its pool, else None."""
    r = settings.rollout
    if r.pool_sampling == "uniform" and not r.pool_agents:
        return None
    return RatedPool(settings, rng, settings.run.seed + 3)


class RatedPool:
    """Draws a game's opponent among the pool's members and keeps each member's results (module docstring)."""

    def __init__(self, settings, rng, seed: int) -> None:
        from spiral.agents import make_agent

        r = settings.rollout
        self.rng, self.prob, self.mode = rng, r.pool_prob, r.pool_sampling
        self.fixed = [
            PerGame(spec, {e: make_agent(spec, e, seed=seed) for e in r.env_ids}) for spec in r.pool_agents
        ]
        run_name = Path(settings.run.out).name
        self.priors = league_priors(r.pool_league, r.env_ids, run_name) if r.pool_league else {}
        self.results: dict[str, list[float]] = {}  # label -> [score, games]
        self.assigned: dict[int, str] = {}  # game id -> the member it was given

    def p_win(self, label: str) -> float:
        """Estimated probability that the policy beats member `label`."""
        p0, n0 = (self.priors[label], LEAGUE_GAMES) if label in self.priors else (0.5, PRIOR_GAMES)
        score, games = self.results.get(label, [0.0, 0.0])
        return (p0 * n0 + score) / (n0 + games)

    def weights(self, labels: list[str]) -> list[float]:
        if self.mode == "uniform":
            return [1.0] * len(labels)
        return [max(1.0 - self.p_win(x), 1e-3) ** POWER for x in labels]

    def draw(self, snapshots: list[Agent], game_id: int) -> Agent | None:
        """A member for game `game_id` with probability pool_prob, else None (self-play)."""
        members = [*snapshots, *self.fixed]
        if not members or self.rng.random() >= self.prob:
            return None
        w = self.weights([m.name for m in members])
        x, i = self.rng.random() * sum(w), 0
        while i < len(w) - 1 and x >= w[i]:
            x -= w[i]
            i += 1
        self.assigned[game_id] = members[i].name
        return members[i]

    def record(self, games: list) -> dict[str, Any]:
        """Add the results of finished games (spiral.training.rollout.GameRecord); return per-member metrics."""
        for g in games:
            label = self.assigned.pop(g.game_id, None)
            if label is None or len(g.policy_roles) != 1:
                continue
            me = g.policy_roles[0]
            mine, theirs = g.returns.get(me, 0.0), g.returns.get(1 - me, 0.0)
            res = self.results.setdefault(label, [0.0, 0.0])
            res[0] += 1.0 if mine > theirs else 0.5 if mine == theirs else 0.0
            res[1] += 1.0
        out: dict[str, Any] = {}
        for label, (_, games_played) in self.results.items():
            key = re.sub(r"[^A-Za-z0-9_.-]", "_", label)
            out[f"pool/{key}/p_win"] = self.p_win(label)
            out[f"pool/{key}/games"] = games_played
        return out

"""Play games between two agents and summarise outcomes per seat (win / draw / loss / invalid, rewards)."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from spiral.agents.base import Agent
from spiral.evaluation.stats import mean_interval, wilson_interval
from spiral.games.base import Env


@dataclass(frozen=True)
class GameRecord:
    """The end of one game."""

    rewards: dict[int, float]
    outcome: dict[int, str]
    invalid_player: int | None
    turns: int
    reason: str


def play_game(env: Env, agents: Sequence[Agent], seed: int | None = None) -> GameRecord:
    """Play one game; agents[p] moves for player p."""
    env.reset(num_players=2, seed=seed)
    done = False
    while not done:
        player, observation = env.get_observation()
        action = agents[player].act(observation, env.legal_actions(), env)
        done, _ = env.step(action)
    rewards, info = env.close()
    return GameRecord(
        rewards, info["outcome"], info.get("invalid_player"), info.get("turns", 0), info["reason"]
    )


def play_match(
    env: Env,
    agents: Sequence[Agent],
    games: int,
    seed: int = 0,
    on_game: Callable[[int, GameRecord], None] | None = None,
) -> list[GameRecord]:
    """Play `games` games with seeds drawn from `seed`; `on_game(i, record)` is called after each."""
    rng = random.Random(seed)
    records = []
    for i in range(games):
        record = play_game(env, agents, seed=rng.getrandbits(32))
        records.append(record)
        if on_game is not None:
            on_game(i, record)
    return records


def seat_summary(records: Sequence[GameRecord], seat: int) -> dict:
    """Counts, win rate with a Wilson 95 % interval and mean reward with a normal 95 % interval."""
    n = len(records)
    wins = sum(r.outcome[seat] == "win" for r in records)
    draws = sum(r.outcome[seat] == "draw" for r in records)
    rewards = [r.rewards[seat] for r in records]
    mean, lo, hi = mean_interval(rewards)
    win_lo, win_hi = wilson_interval(wins, n)
    return {
        "games": n,
        "wins": wins,
        "draws": draws,
        "losses": n - wins - draws,
        "invalid": sum(r.invalid_player == seat for r in records),
        "win_rate": wins / n if n else 0.0,
        "win_rate_ci": [win_lo, win_hi],
        "mean_reward": mean,
        "mean_reward_ci": [lo, hi],
    }

"""Random-vs-random games per second of each game, observations rendered, one process.

Usage: python benchmarks/game_speed.py [--seconds 2] [--out docs/results/game_speed.md]
Baselines measured in the same run: TextArena's TicTacToe (through our adapter) and OpenSpiel's
tic_tac_toe / kuhn_poker without any text.
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import time
from pathlib import Path

from spiral.games import make

GAMES = [
    ("TicTacToe-v0", {}),
    ("KuhnPoker-v2", {"rounds": 1}),
    ("KuhnPoker-v2", {}),
    ("KuhnPoker-v1", {}),
    ("SimpleNegotiation-v1", {}),
    ("textarena/TicTacToe-v0", {}),
]


def bench_env(env_id: str, kwargs: dict, seconds: float) -> tuple[int, int, float]:
    """(games, turns, elapsed) of random play; every turn renders the observation."""
    env, rng = make(env_id, **kwargs), random.Random(0)
    games = turns = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.reset(seed=games)
        done = False
        while not done:
            _, obs = env.get_observation()
            done, _ = env.step(rng.choice(env.legal_actions()))
            turns += 1
        env.close()
        games += 1
    return games, turns, time.perf_counter() - start


def bench_openspiel(name: str, seconds: float) -> tuple[int, int, float]:
    """Random play in OpenSpiel (no text) for comparison."""
    import pyspiel

    game, rng = pyspiel.load_game(name), random.Random(0)
    games = turns = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        state = game.new_initial_state()
        while not state.is_terminal():
            if state.is_chance_node():
                outcomes, probs = zip(*state.chance_outcomes(), strict=True)
                state.apply_action(rng.choices(outcomes, probs)[0])
                continue
            state.apply_action(rng.choice(state.legal_actions()))
            turns += 1
        games += 1
    return games, turns, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per game")
    parser.add_argument("--out", default="docs/results/game_speed.md", help="markdown table to write")
    args = parser.parse_args()
    rows = []
    for env_id, kwargs in GAMES:
        label = env_id + "".join(f" {k}={v}" for k, v in kwargs.items())
        rows.append((label, *bench_env(env_id, kwargs, args.seconds)))
    for name in ("tic_tac_toe", "kuhn_poker"):
        rows.append((f"OpenSpiel {name} (no text)", *bench_openspiel(name, args.seconds)))
    base = next(g / t for label, g, _, t in rows if label.startswith("textarena/"))
    lines = [
        "# Game layer speed: random vs random, observations rendered, one process",
        "",
        f"Command: `python benchmarks/game_speed.py --seconds {args.seconds:g}`",
        f"Machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}",
        "",
        "| game | games/s | turns/s | vs TextArena TicTacToe |",
        "|---|---:|---:|---:|",
    ]
    for label, games, turns, elapsed in rows:
        lines.append(
            f"| {label} | {games / elapsed:,.0f} | {turns / elapsed:,.0f} | {games / elapsed / base:.1f}x |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

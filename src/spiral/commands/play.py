"""`spiral play`: games between two agents (fixed opponents, API models, a human, a trained model)."""

from __future__ import annotations

import argparse
import json

from runkit.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `spiral play`."""
    parser.add_argument(
        "--game", default="TicTacToe-v0", help="game id, e.g. KuhnPoker-v2 or textarena/<EnvId>"
    )
    parser.add_argument(
        "--p0", default="random", help="agent of Player 0: random, optimal, nash[:alpha=A], ..."
    )
    parser.add_argument("--p1", default="random", help="agent of Player 1 (same specs as --p0)")
    parser.add_argument("--games", type=int, default=100, help="number of games")
    parser.add_argument("--seed", type=int, default=0, help="seed of the deals and of random agents")
    parser.add_argument(
        "--parse-mode", choices=("strict", "lenient"), default="strict", help="action parsing"
    )
    penalty = parser.add_mutually_exclusive_group()
    penalty.add_argument(
        "--eval-penalty",
        dest="penalty",
        action="store_const",
        const="eval",
        help="invalid move: -1 / +1 (default)",
    )
    penalty.add_argument(
        "--train-penalty",
        dest="penalty",
        action="store_const",
        const="train",
        help="invalid move: -1.5 / +0.5",
    )
    parser.set_defaults(penalty="eval")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def _format(summary: dict) -> str:
    """A small table: one row per seat."""
    head = (
        f"{summary['game']}: {summary['games']} games, seed {summary['seed']}, "
        f"{summary['penalty']} penalty for invalid moves"
    )
    cols = f"{'seat':<5}{'agent':<24}{'win':>6}{'draw':>6}{'loss':>6}{'invalid':>8}  win rate [95% CI]       mean reward [95% CI]"
    rows = [head, cols]
    for seat in ("p0", "p1"):
        s = summary["seats"][seat]
        lo, hi = s["win_rate_ci"]
        mlo, mhi = s["mean_reward_ci"]
        rows.append(
            f"{seat:<5}{summary['agents'][seat][:23]:<24}{s['wins']:>6}{s['draws']:>6}{s['losses']:>6}{s['invalid']:>8}"
            f"  {s['win_rate']:.3f} [{lo:.3f}, {hi:.3f}]   {s['mean_reward']:+.3f} [{mlo:+.3f}, {mhi:+.3f}]"
        )
    return "\n".join(rows)


def run(args: argparse.Namespace) -> int:
    """Play the games and print per-seat statistics."""
    from spiral.agents import make_agent
    from spiral.evaluation.match import play_match, seat_summary
    from spiral.games import make

    if args.games < 1:
        raise UserError(f"--games must be >= 1, got {args.games}")
    env = make(args.game, parse_mode=args.parse_mode, invalid_penalty=args.penalty)
    agents = [
        make_agent(spec, args.game, seed=args.seed * 2 + i) for i, spec in enumerate((args.p0, args.p1))
    ]
    interactive = "human" in (args.p0, args.p1)

    def report(i: int, record) -> None:
        if interactive:
            print(f"Game {i + 1}: rewards {record.rewards} ({record.reason})", flush=True)

    records = play_match(env, agents, args.games, seed=args.seed, on_game=report)
    summary = {
        "game": args.game,
        "games": args.games,
        "seed": args.seed,
        "penalty": args.penalty,
        "agents": {"p0": agents[0].name, "p1": agents[1].name},
        "seats": {f"p{s}": seat_summary(records, s) for s in (0, 1)},
    }
    print(json.dumps(summary, indent=2) if args.json else _format(summary))
    return 0

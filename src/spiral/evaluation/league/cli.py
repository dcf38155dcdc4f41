"""`spiral eval league`: the command line, and `play_league`, which plays, rates and writes a league folder.

  spiral eval league --run runs/kuhn --players random,optimal,sft=runs/sft-kuhn --n 64
  spiral eval league --players random,minimax,runs/ttt --games TicTacToe-v0 --schedule budget --budget 2048

The folder (default RUN/eval/league for one --run, else runs/eval/league) gets config.json, games.jsonl (one
line per game, appended per chunk; rerunning the command plays only what is missing), league.json,
league.md and ratings_<game>.png.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from runkit.errors import UserError
from runkit.io import atomic_write_json, atomic_write_text
from runkit.rundir import claim_output
from spiral.evaluation.league.players import AgentCache, Player, check_labels, parse_player, run_players
from spiral.evaluation.league.ratings import RATING_MODELS
from spiral.evaluation.league.runner import RATE_BY, SCHEDULES, League, LeagueConfig


def play_league(
    players: list[Player],
    config: LeagueConfig,
    out: str | Path,
    n: int | None = None,
    budget: int | None = None,
    agents: AgentCache | None = None,
    on_chunk=None,
    log=None,
) -> dict[str, Any]:
    """Play what the folder lacks, rate, and write league.json, league.md and the figures; return league.json."""
    from spiral.evaluation.league.figure import rating_figure
    from spiral.evaluation.league.summary import league_json, league_markdown

    check_labels(players)
    out = claim_output(out)
    league = League(players, config, out, agents, on_chunk, log)
    results = league.run(n, budget)
    meta = {"config": asdict(config), "n": n, "budget": budget, "chunks_played_now": league.played}
    doc = league_json(results, players, meta)
    atomic_write_json(out / "league.json", doc)
    atomic_write_text(out / "league.md", league_markdown(doc))
    for env_id in doc["games"]:
        rating_figure(doc, env_id, out / f"ratings_{env_id}.png")
    return doc


# ---- CLI -----------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `spiral eval league`."""
    parser.add_argument("--players", default="", help="comma-separated agent specs, each optionally NAME=SPEC "
                        "(random, optimal, nash:alpha=A, minimax, heuristic, api:MODEL@URL, a model / "
                        "checkpoint / run folder)")  # fmt: skip
    parser.add_argument("--player", action="append", default=[], metavar="SPEC",
                        help="one more player (repeatable; for specs that hold a comma)")  # fmt: skip
    parser.add_argument("--run", action="append", default=[], metavar="RUN_DIR",
                        help="add every checkpoint of a run as players RUN@STEP (repeatable)")  # fmt: skip
    parser.add_argument("--max-checkpoints", type=int, default=0,
                        help="at most this many checkpoints per --run, evenly spaced (0 = all)")  # fmt: skip
    parser.add_argument("--games", help="comma-separated game ids (default: the first --run's games)")
    parser.add_argument("--game-option", action="append", default=[], metavar="GAME.KEY=VALUE",
                        help="a game option, e.g. KuhnPoker-v2.rounds=1 (default: the first --run's options)")  # fmt: skip
    parser.add_argument("--schedule", choices=SCHEDULES, default="round-robin",
                        help="round-robin: --n games per pair; budget: --budget games per game, spent where the "
                        "ratings are least certain")  # fmt: skip
    parser.add_argument(
        "--n", type=int, default=64, help="round-robin: games per pair (a multiple of --chunk)"
    )
    parser.add_argument("--budget", type=int, help="budget: games per game (a multiple of --chunk)")
    parser.add_argument("--chunk", type=int, default=32,
                        help="games per unit of work (played at once, seeded, saved together; even)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="league seed (deals, agents' draws)")
    parser.add_argument("--rating", choices=RATING_MODELS, default="plackett-luce", help="openskill model")
    parser.add_argument("--rate-by", choices=RATE_BY, default="game",
                        help="game: each game rates once; deal: the two seats of a deal rate once, by summed reward "
                        "(duplicate play: chip margins count, the luck of the cards cancels; for Kuhn Poker)")  # fmt: skip
    parser.add_argument(
        "--tau", type=float, default=0.0, help="openskill skill drift per game (0: fixed players)"
    )
    parser.add_argument(
        "--temperature", type=float, default=0.6, help="language-model players' sampling temperature"
    )
    parser.add_argument("--top-p", type=float, default=0.95, help="language-model players' nucleus mass")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="language-model response budget")
    parser.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16"], help="generation dtype")
    parser.add_argument("--batch-size", type=int, default=32, help="sequences per generation batch")
    parser.add_argument("--max-loaded", type=int, default=4, help="language models kept in memory at once")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (1 on a busy shared machine)")
    parser.add_argument(
        "--out", help="league folder (default RUN/eval/league for one --run, else runs/eval/league)"
    )
    parser.add_argument("--json", action="store_true", help="print league.json")


def _options(items: list[str]) -> dict[str, dict]:
    """GAME.KEY=VALUE items as {game: {key: value}} (values read as TOML, else text)."""
    from spiral.config import parse_value

    out: dict[str, dict] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        game, dot, name = key.strip().rpartition(".")
        if not sep or not dot or not game or not name:
            raise UserError(f"--game-option {item!r}: write GAME.KEY=VALUE, e.g. KuhnPoker-v2.rounds=1")
        out.setdefault(game, {})[name] = parse_value(raw.strip())
    return out


# (option, lowest, highest) of the numeric options; None: unbounded on that side
BOUNDS = (("n", 1, None), ("budget", 1, None), ("chunk", 2, None), ("seed", 0, 2**63 - 1),
          ("max_checkpoints", 0, None), ("tau", 0.0, None), ("temperature", 0.0, None), ("top_p", 1e-9, 1.0),
          ("max_new_tokens", 1, 100_000), ("batch_size", 1, None), ("max_loaded", 1, None), ("threads", 1, None))  # fmt: skip


def check_numbers(args: argparse.Namespace) -> None:
    """Every numeric option finite and within its bounds, or one line naming it."""
    import math

    from runkit.settings import MAX_TEXT

    texts = [args.players, args.games or "", args.out or "", *args.player, *args.run, *args.game_option]
    if any(len(t) > MAX_TEXT for t in texts):
        raise UserError(f"an option's text is longer than {MAX_TEXT:,} characters")
    for name, low, high in BOUNDS:
        value = getattr(args, name, None)
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if not math.isfinite(value) or value < low or (high is not None and value > high):
            span = f">= {low}" if high is None else f"in [{low}, {high}]"
            raise UserError(f"{flag} must be a finite number {span}, got {value}")


def resolve(args: argparse.Namespace) -> tuple[list[Player], LeagueConfig, Path]:
    """Players, league settings and folder from the command line (one-line errors for bad input)."""
    from spiral.agents import make_agent
    from spiral.games import make
    from spiral.model import resolve_gen_dtype

    check_numbers(args)
    specs = [s for s in args.players.split(",") if s.strip()] + list(args.player)
    players = [parse_player(s) for s in specs]
    for run in args.run:
        players += run_players(run, args.max_checkpoints)
    if len(players) < 2:
        raise UserError("a league needs at least two players (--players, --player, --run)")
    run_cfg: dict[str, Any] = {}
    if args.run:
        path = Path(args.run[0]) / "config.json"
        run_cfg = json.loads(path.read_text(encoding="utf-8")).get("rollout", {}) if path.is_file() else {}
    games = [g.strip() for g in (args.games or ",".join(run_cfg.get("env_ids", []))).split(",") if g.strip()]
    if not games:
        raise UserError("name the games with --games (or give a --run whose games are used)")
    env_kwargs = {g: dict(run_cfg.get("env_kwargs", {}).get(g, {})) for g in games}
    for game, opts in _options(args.game_option).items():
        if game not in games:
            raise UserError(f"--game-option names {game}, which is not among --games")
        env_kwargs[game].update(opts)
    for g in games:
        make(g, **env_kwargs[g])  # unknown games and options fail here, before any model loads
        for p in players:  # and so does a fixed agent that does not exist (it was dropped silently)
            if p.kind == "fixed":
                make_agent(p.spec, g)
    env_kwargs = {g: kw for g, kw in env_kwargs.items() if kw}
    dtype = resolve_gen_dtype(args.dtype)
    lm = {"temperature": args.temperature, "top_p": args.top_p, "max_new_tokens": args.max_new_tokens,
          "dtype": dtype, "batch_size": args.batch_size}  # fmt: skip
    config = LeagueConfig(games, env_kwargs, args.schedule, args.chunk, args.seed, args.rating, args.tau,
                          args.rate_by, lm)  # fmt: skip
    out = Path(args.out) if args.out else (Path(args.run[0]) / "eval" / "league" if len(args.run) == 1
                                           else Path("runs/eval/league"))  # fmt: skip
    return players, config, out


def run(args: argparse.Namespace) -> int:
    """Play the league, print the ratings and where the files are."""
    import torch

    from spiral.evaluation.league.summary import md_table, rating_rows

    players, config, out = resolve(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    n, budget = (args.n, None) if config.schedule == "round-robin" else (None, args.budget)
    agents = AgentCache(config.lm, args.max_loaded)
    doc = play_league(players, config, out, n, budget, agents,
                      log=lambda msg: print(msg, file=sys.stderr, flush=True))  # fmt: skip
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        for env_id in doc["games"]:
            print(f"{env_id}:")
            print("\n".join(md_table(rating_rows(doc, env_id))))
    print(f"saved: {out}/league.json, league.md, games.jsonl, ratings_*.png", flush=True)
    return 0

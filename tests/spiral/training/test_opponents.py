"""Opponents drawn by rating: members the policy does not beat come up more often; a league gives the start."""

from __future__ import annotations

import random
from types import SimpleNamespace

from runkit.metrics import read_metrics
from spiral.agents.random_agent import RandomAgent
from spiral.cli import main
from spiral.evaluation.league.cli import play_league
from spiral.evaluation.league.players import parse_player
from spiral.evaluation.league.runner import LeagueConfig
from spiral.training.opponents import RatedPool
from spiral.training.rollout import GameRecord


def settings(**rollout):
    r = {"pool_prob": 1.0, "pool_sampling": "rating", "pool_agents": [], "pool_league": "",
         "env_ids": ["TicTacToe-v0"], **rollout}  # fmt: skip
    return SimpleNamespace(rollout=SimpleNamespace(**r), run=SimpleNamespace(out="runs/ttt"))


def member(name):
    agent = RandomAgent(0)
    agent.name = name
    return agent


def test_members_the_policy_loses_to_are_drawn_more_often():
    pool = RatedPool(settings(pool_agents=["random"]), random.Random(0), seed=1)
    snaps = [member("pool:10"), member("pool:20")]
    games = []
    for gid in range(200):
        opp = pool.draw(snaps, gid)
        won = opp.name != "pool:20"  # the policy beats every member but pool:20
        games.append(
            GameRecord(gid, "TicTacToe-v0", {0: 1.0 if won else -1.0, 1: -1.0 if won else 1.0}, [0], {})
        )
        if gid % 20 == 19:
            stats = pool.record(games)
            games = []
    drawn = {
        name: int(stats[f"pool/{name.replace(':', '_')}/games"]) for name in ("pool:10", "pool:20", "random")
    }
    assert sum(drawn.values()) == 200 and drawn["pool:20"] > drawn["pool:10"] + drawn["random"]
    assert stats["pool/pool_20/p_win"] < 0.1 < 0.9 < stats["pool/random/p_win"]
    uniform = RatedPool(settings(pool_sampling="uniform", pool_prob=0.0), random.Random(0), seed=1)
    assert uniform.draw(snaps, 0) is None  # pool_prob 0: always self-play


def test_a_league_gives_the_starting_estimates(tmp_path):
    players = [parse_player(s) for s in ("random", "optimal")]
    play_league(players, LeagueConfig(["TicTacToe-v0"], chunk=8), tmp_path, n=16)
    pool = RatedPool(settings(pool_agents=["random", "optimal"], pool_league=str(tmp_path / "league.json")),
                     random.Random(0), seed=1)  # fmt: skip
    assert pool.p_win("optimal") < 0.5 < pool.p_win("random")  # an average league player vs each
    assert pool.weights(["optimal", "random"])[0] > pool.weights(["optimal", "random"])[1]


def test_a_run_with_fixed_agents_and_past_policies_drawn_by_rating(tmp_path):
    out = tmp_path / "run"
    argv = ["train", "--preset", "tiny-test", "--threads", "1", "--steps", "2", "--out", str(out),
            "--set", "run.plots=false", "--set", "eval.every=0", "--set", "eval.at_start=false",
            "--set", "rollout.pool_sampling=rating", "--set", "rollout.pool_agents=random,optimal",
            "--set", "rollout.pool_prob=0.75", "--set", "rollout.pool_size=2", "--set", "rollout.pool_every=1",
            "--set", "rollout.action_mode=constrained"]  # fmt: skip
    assert main(argv) == 0
    last = read_metrics(out / "metrics.jsonl")[-1]
    assert last["pool/random/games"] + last["pool/optimal/games"] + last.get("pool/pool_1/games", 0) > 0
    assert 0 < last["pool/optimal/p_win"] < 1
    assert main([*argv, "--set", "rollout.pool_league=/no/league.json", "--out", str(tmp_path / "x")]) == 2

"""`spiral eval league`: a planted order comes out, a resumed league equals an uninterrupted one, the budgeted
schedule spends its games on the uncertain pair, checkpoints of a run form a series, bad input is one line."""

from __future__ import annotations

import json
import random

import pytest

from runkit.errors import UserError
from spiral.agents.base import Agent
from spiral.agents.minimax import best_moves
from spiral.cli import main
from spiral.evaluation.league.cli import play_league
from spiral.evaluation.league.players import AgentCache, Player, parse_player
from spiral.evaluation.league.runner import LeagueConfig, derive_seed
from spiral.games.tictactoe import board_from_observation


class Sloppy(Agent):
    """Tic-Tac-Toe: a minimax move with probability 1 - eps, else a random legal move."""

    def __init__(self, eps: float, seed: int | None = None) -> None:
        self.eps, self.rng = eps, random.Random(seed)

    def act(self, observation, legal_actions, env=None):
        if self.rng.random() < self.eps:
            return self.rng.choice(legal_actions)
        board = "".join(env.board) if env is not None else board_from_observation(observation)
        return f"[{self.rng.choice(best_moves(board))}]"


def sloppy_factory(spec, env_id, seed=None, **_):
    if not spec.startswith("eps"):
        raise UserError(f"unknown {spec}")
    return Sloppy(float(spec[3:]), seed)


def planted(*eps: float) -> tuple[list[Player], AgentCache]:
    players = [Player(f"eps{e}", f"eps{e}", "fixed") for e in eps]
    return players, AgentCache(factory=sloppy_factory)


def test_a_planted_order_of_three_agents_comes_out_in_order(tmp_path):
    players, agents = planted(0.0, 0.5, 1.0)
    config = LeagueConfig(["TicTacToe-v0"], chunk=16, seed=3)
    doc = play_league(players, config, tmp_path, n=64, agents=agents)
    g = doc["games"]["TicTacToe-v0"]
    assert g["ranking"] == ["eps0.0", "eps0.5", "eps1.0"]
    r = g["ratings"]
    assert r["eps0.0"]["ci"][0] > r["eps1.0"]["ci"][1]  # the best and the worst are told apart
    assert all(r[x]["games"] == 128 for x in r)
    cell = g["matrix"]["eps0.0"]["eps1.0"]
    assert cell["games"] == 64 and cell["loss_rate"] == 0.0 and cell["win_ci"][0] > 0.5
    back = g["matrix"]["eps1.0"]["eps0.0"]  # the other direction is the mirror image
    assert back["loss_rate"] == cell["win_rate"] and back["mean_reward"] == -cell["mean_reward"]
    assert doc["config"]["rating"] == "plackett-luce"
    md = (tmp_path / "league.md").read_text()
    assert "| 1 | eps0.0 |" in md and "95 % interval" in md
    assert (tmp_path / "ratings_TicTacToe-v0.png").read_bytes().startswith(b"\x89PNG")
    # Thurstone-Mosteller agrees on the same games (ratings may change without replaying a round-robin)
    tm = play_league(players, LeagueConfig(["TicTacToe-v0"], chunk=16, seed=3, rating="thurstone-mosteller"),
                     tmp_path, n=64, agents=agents)  # fmt: skip
    assert tm["chunks_played_now"] == 0 and tm["games"]["TicTacToe-v0"]["ranking"] == g["ranking"]


class Stop(Exception):
    pass


def _interrupt_after(k: int):
    count = [0]

    def on_chunk(key, rows):
        count[0] += 1
        if count[0] == k:
            raise Stop

    return on_chunk


@pytest.mark.parametrize("schedule", ["round-robin", "budget"])
def test_a_resumed_league_equals_an_uninterrupted_one(tmp_path, schedule):
    specs = ["random", "optimal", "nash:alpha=0.3"]
    players = [parse_player(s) for s in specs]
    config = LeagueConfig(["KuhnPoker-v2", "TicTacToe-v0"], {"KuhnPoker-v2": {"rounds": 1}}, schedule, chunk=4,
                          seed=7, rate_by="deal")  # fmt: skip
    size = {"n": 8} if schedule == "round-robin" else {"budget": 20}
    whole = play_league(players, config, tmp_path / "whole", **size)
    with pytest.raises(Stop):
        play_league(players, config, tmp_path / "part", **size, on_chunk=_interrupt_after(3))
    with (tmp_path / "part" / "games.jsonl").open("a") as f:
        f.write('{"env_id": "KuhnPoker-v2", "player": "nash:al')  # a torn last line
    resumed = play_league(players, config, tmp_path / "part", **size)
    assert resumed["chunks_played_now"] == whole["chunks_played_now"] - 3  # the third chunk was saved
    whole.pop("chunks_played_now"), resumed.pop("chunks_played_now")
    assert json.dumps(resumed, sort_keys=True) == json.dumps(whole, sort_keys=True)
    assert (tmp_path / "part" / "games.jsonl").read_text() == (tmp_path / "whole" / "games.jsonl").read_text()
    # optimal (Tic-Tac-Toe minimax) plays only its own games; nash only Kuhn Poker
    assert set(whole["games"]["TicTacToe-v0"]["ratings"]) == {"random", "optimal"}


def test_the_budget_goes_to_the_pair_the_ratings_know_least(tmp_path):
    players, agents = planted(0.0, 0.01, 1.0)  # two near-perfect players draw; both beat random
    config = LeagueConfig(["TicTacToe-v0"], schedule="budget", chunk=8, seed=1)
    doc = play_league(players, config, tmp_path, budget=8 * 12, agents=agents)
    games = {k: v["all"]["games"] for k, v in doc["games"]["TicTacToe-v0"]["pairs"].items()}
    assert sum(games.values()) == 96 and min(games.values()) >= 8  # every pair is played once first
    assert games["eps0.0 vs eps0.01"] > games["eps0.0 vs eps1.0"] + games["eps0.01 vs eps1.0"]


def test_a_changed_league_is_refused_and_players_can_be_added(tmp_path):
    players, agents = planted(0.0, 1.0)
    play_league(players, LeagueConfig(["TicTacToe-v0"], chunk=4), tmp_path, n=4, agents=agents)
    with pytest.raises(UserError, match="different league .*chunk"):
        play_league(players, LeagueConfig(["TicTacToe-v0"], chunk=8), tmp_path, n=8, agents=agents)
    more, agents = planted(0.0, 1.0, 0.5)
    doc = play_league(more, LeagueConfig(["TicTacToe-v0"], chunk=4), tmp_path, n=4, agents=agents)
    assert doc["chunks_played_now"] == 2 and len(doc["games"]["TicTacToe-v0"]["pairs"]) == 3
    with pytest.raises(UserError, match="multiple of --chunk"):
        play_league(more, LeagueConfig(["TicTacToe-v0"], chunk=4), tmp_path, n=6, agents=agents)


def test_player_specs_and_seeds():
    assert parse_player("nash:alpha=0.2") == Player("nash:alpha=0.2", "nash:alpha=0.2", "fixed")
    assert parse_player("best=optimal") == Player("best", "optimal", "fixed")
    assert parse_player("tiny").kind == "model" and parse_player("api:m@http://h/v1").kind == "api"
    with pytest.raises(UserError, match="no such folder"):
        parse_player("runs/nothing-here")
    assert derive_seed(0, "a", 1) == derive_seed(0, "a", 1) != derive_seed(0, "a", 2)


def _fake_run(root, steps):
    """A run folder whose checkpoints are tiny random models (one per step, different weights)."""
    from runkit.checkpoint import checkpoint_name, save_checkpoint
    from spiral.model import load_tokenizer, tiny_model

    tok = load_tokenizer("tiny")
    (root / "checkpoints").mkdir(parents=True)
    cfg = {"kind": "spiral", "model": {"prompt_style": "compact"},
           "rollout": {"env_ids": ["KuhnPoker-v2"], "env_kwargs": {"KuhnPoker-v2": {"rounds": 1}},
                       "action_mode": "constrained", "max_new_tokens": 8}}  # fmt: skip
    (root / "config.json").write_text(json.dumps(cfg))
    for step in steps:
        model = tiny_model(len(tok), tok.eos_token_id, tok.pad_token_id, seed=step)

        def write(tmp, model=model):
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)

        save_checkpoint(root / "checkpoints" / checkpoint_name(step), {"step": step}, write_extra=write)
    return root


def test_the_checkpoints_of_a_run_are_a_series_and_the_report_shows_them(tmp_path, capsys):
    run = _fake_run(tmp_path / "kuhn-run", [2, 4])
    argv = ["eval", "league", "--run", str(run), "--players", "random,best=optimal", "--n", "4", "--chunk", "4",
            "--rate-by", "deal", "--threads", "1", "--max-loaded", "1"]  # fmt: skip
    assert main(argv) == 0
    out = run / "eval" / "league"
    doc = json.loads((out / "league.json").read_text())
    assert doc["config"]["env_kwargs"] == {"KuhnPoker-v2": {"rounds": 1}}  # the run's game and options
    p = doc["players"]["kuhn-run@4"]
    assert (p["kind"], p["step"], p["series"]) == ("checkpoint", 4, "kuhn-run")
    assert set(doc["games"]["KuhnPoker-v2"]["ratings"]) == {"kuhn-run@2", "kuhn-run@4", "random", "best"}
    assert "kuhn-run@2" in capsys.readouterr().out
    rows = (out / "games.jsonl").read_text()
    # the same command again plays nothing and changes nothing
    assert main(argv) == 0
    assert (out / "games.jsonl").read_text() == rows
    assert json.loads((out / "league.json").read_text())["chunks_played_now"] == 0
    from spiral.report import build_report

    page = build_report(run).read_text()  # spiral report RUN shows the league: tables and the figure
    assert (
        "League ratings (spiral eval league)" in page
        and "kuhn-run@4" in page
        and "ratings KuhnPoker-v2" in page
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--players", "random"], "at least two players"),
        (["--players", "random,optimal"], "--games"),
        (["--players", "random,random", "--games", "TicTacToe-v0"], "two players are labelled"),
        (["--players", "random,optimal", "--games", "Chess-v9"], "unknown game"),
        (["--players", "random,optimal", "--games", "TicTacToe-v0", "--chunk", "3"], "even number"),
    ],
)
def test_bad_input_is_one_line(args, message, tmp_path, capsys):
    assert main(["eval", "league", *args, "--out", str(tmp_path / "l")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("bad", ["optmal", "nash:alpha=2", "=random"])
def test_a_league_with_a_player_that_does_not_exist_is_one_line(bad, tmp_path, capsys):
    from spiral.cli import main

    rc = main(["eval", "league", "--players", f"random,{bad}", "--games", "KuhnPoker-v2", "--n", "2",
               "--out", str(tmp_path / "league")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and not (tmp_path / "league" / "league.json").exists()

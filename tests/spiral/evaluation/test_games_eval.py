"""Game evaluation: equal seats, shared deals, one batched call per round, rates with Wilson intervals."""

import json
from types import SimpleNamespace

import pytest

from runkit.errors import UserError
from spiral.agents import make_agent
from spiral.agents.base import Agent
from spiral.evaluation.games import evaluate_games, format_games, metric_rows, play_games, summarize_games


class BoxedFirstLegal(Agent):
    """A stand-in for the LM: answers '... \\boxed{first legal move}' and records its batches."""

    name = "fake-lm"

    def __init__(self, valid: bool = True):
        self.valid = valid
        self.batches: list[int] = []
        self.last_responses = []

    def act(self, observation, legal_actions, env=None):
        return self.act_batch([observation], [legal_actions])[0]

    def act_batch(self, observations, legal, envs=None):
        self.batches.append(len(observations))
        texts = [f"I reason... \\boxed{{{la[0].strip('[]')}}}" if self.valid else "I pass." for la in legal]
        self.last_responses = [SimpleNamespace(tokens=[0] * 7) for _ in texts]
        return texts


def test_seats_are_split_equally_and_deals_are_shared():
    model = BoxedFirstLegal()
    results = play_games(model, make_agent("random", "KuhnPoker-v1", seed=0), "KuhnPoker-v1", 10, seed=3)
    assert [r.seat for r in results] == [0, 1] * 5
    assert all(results[2 * k].seed == results[2 * k + 1].seed for k in range(5))
    assert len({r.seed for r in results}) == 5


def test_model_moves_are_batched_across_games():
    model = BoxedFirstLegal()
    n = 16
    results = play_games(model, make_agent("random", "TicTacToe-v0", seed=0), "TicTacToe-v0", n, seed=0)
    assert len(results) == n
    assert len(model.batches) <= 9  # one call per round, at most 9 rounds in Tic-Tac-Toe
    assert max(model.batches) == n // 2  # the first round: every game where the model opens
    summary = summarize_games(results)["all"]
    assert summary["invalid_rate"] == 0.0
    assert summary["mean_response_tokens"] == 7


def test_invalid_moves_are_losses_with_an_interval():
    model = BoxedFirstLegal(valid=False)
    results = play_games(model, make_agent("random", "TicTacToe-v0", seed=0), "TicTacToe-v0", 20, seed=0)
    s = summarize_games(results)
    assert s["all"]["invalid_rate"] == 1.0 and s["all"]["loss_rate"] == 1.0
    lo, hi = s["all"]["invalid_ci"]
    assert 0.8 < lo < 1.0 and hi == 1.0
    assert s["all"]["invalid_per_move"] == 1.0
    assert all(r.turns <= 2 for r in results)  # the game ends at the model's first move


def test_random_play_shows_the_first_mover_advantage():
    model = make_agent("random", "TicTacToe-v0", seed=1)
    results = play_games(model, make_agent("random", "TicTacToe-v0", seed=2), "TicTacToe-v0", 600, seed=0)
    s = summarize_games(results)
    assert s["seat0"]["games"] == s["seat1"]["games"] == 300
    assert s["seat0"]["win_rate"] > s["seat1"]["win_rate"] + 0.15  # ~58 % vs ~29 % for random play
    lo, hi = s["seat0"]["win_ci"]
    assert lo < s["seat0"]["win_rate"] < hi


def test_evaluate_games_writes_summary_and_transcripts(tmp_path):
    games = ["TicTacToe-v0", "KuhnPoker-v1"]
    opponents = {g: {"random": make_agent("random", g, seed=0)} for g in games}
    summary = evaluate_games(
        BoxedFirstLegal(), opponents, games, 12, seed=0, out=tmp_path, transcripts=1, progress=False
    )
    assert set(summary) == {"TicTacToe-v0 vs random", "KuhnPoker-v1 vs random"}
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["kind"] == "games" and saved["results"]["KuhnPoker-v1 vs random"]["all"]["games"] == 12
    assert len((tmp_path / "games.jsonl").read_text().splitlines()) == 24
    picked = [json.loads(x) for x in (tmp_path / "transcripts.jsonl").read_text().splitlines()]
    assert 1 <= len(picked) <= 6
    assert all(t["transcript"] and "observation" in t["transcript"][0] for t in picked)
    assert "KuhnPoker-v1 vs random" in format_games(summary)
    assert "eval/KuhnPoker-v1/random/win_rate" in metric_rows(summary)


def test_cli_rejects_unknown_games_before_loading_a_model():
    from spiral.cli import main

    assert main(["eval", "games", "--model", "tiny", "--games", "Chess-v9", "--n", "2"]) == 2
    with pytest.raises(UserError):
        from spiral.games import make

        make("Chess-v9")


def test_cli_plays_a_plain_model_in_constrained_mode(tmp_path):
    """--action-mode constrained gives a model without a run (the base model) a run's constrained decoding: every
    move is a legal one, and the transcripts show the scored `\\boxed{move}` answers."""
    from spiral.cli import main

    out = tmp_path / "games"
    argv = ["eval", "games", "--model", "tiny", "--games", "KuhnPoker-v2", "--opponents", "random", "--n", "4",
            "--action-mode", "constrained", "--prompt-style", "compact", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    s = json.loads((out / "summary.json").read_text())["results"]["KuhnPoker-v2 vs random"]["all"]
    assert s["games"] == 4 and s["invalid_per_move"] == 0.0  # a random tiny model answers freely invalid
    moves = [
        m
        for t in map(json.loads, (out / "transcripts.jsonl").read_text().splitlines())
        for m in t["transcript"]
    ]
    assert any(m.get("response", "").startswith("\\boxed{") for m in moves)

"""`spiral play` and `spiral eval`: output, JSON, interactive play, one-line user errors."""

from __future__ import annotations

import builtins
import itertools
import json

import pytest

from spiral.cli import main


def test_play_prints_a_table(capsys: pytest.CaptureFixture) -> None:
    assert main(["play", "--game", "KuhnPoker-v2", "--p0", "random", "--p1", "nash", "--games", "50"]) == 0
    out = capsys.readouterr().out
    assert "KuhnPoker-v2: 50 games" in out and "nash(alpha=0)" in out and "win rate" in out


def test_play_json_counts_add_up(capsys: pytest.CaptureFixture) -> None:
    argv = ["play", "--game", "TicTacToe-v0", "--p0", "optimal", "--games", "40", "--seed", "3", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    p0, p1 = out["seats"]["p0"], out["seats"]["p1"]
    assert p0["wins"] + p0["draws"] + p0["losses"] == 40 and p0["losses"] == 0
    assert p0["wins"] == p1["losses"] and p0["win_rate_ci"][0] <= p0["win_rate"] <= p0["win_rate_ci"][1]
    assert out["penalty"] == "eval" and out["agents"] == {"p0": "minimax", "p1": "random"}


def test_play_is_reproducible(capsys: pytest.CaptureFixture) -> None:
    argv = ["play", "--game", "SimpleNegotiation-v1", "--p0", "heuristic", "--games", "30", "--json"]
    main(argv)
    first = capsys.readouterr().out
    main(argv)
    assert capsys.readouterr().out == first


def test_play_with_a_human(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    cells = itertools.cycle([str(c) for c in range(9)])
    monkeypatch.setattr(builtins, "input", lambda prompt="": next(cells))
    assert main(["play", "--game", "TicTacToe-v0", "--p0", "human", "--p1", "minimax", "--games", "2"]) == 0
    out = capsys.readouterr().out
    assert "Game 1: rewards" in out and "Game 2: rewards" in out and "Your legal actions" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["play", "--game", "Chess-v9"], "unknown game"),
        (["play", "--p0", "alphago"], "unknown agent"),
        (["play", "--games", "0"], "--games must be >= 1"),
        (["play", "--game", "KuhnPoker-v2", "--p1", "minimax"], "plays only TicTacToe"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(argv: list[str], message: str, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_eval_without_subcommand_prints_help(capsys: pytest.CaptureFixture) -> None:
    assert main(["eval"]) == 0
    assert "exploitability" in capsys.readouterr().out

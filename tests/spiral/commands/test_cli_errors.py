"""`spiral` commands on damaged or foreign files: one line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from spiral.cli import main

sys.path.insert(0, str(Path(__file__).parents[1] / "evaluation"))
from test_report import make_run  # noqa: E402

TINY = ["--preset", "tiny-test", "--threads", "1"]


def _one_line_exit_2(capsys, argv: list[str], message: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "cannot be read as JSON"),
        (b"[1, 2]", "holds a JSON list"),
        (b"\xff\xfe", "cannot be read"),
    ],
)
def test_resume_of_a_folder_whose_config_is_damaged(tmp_path, capsys, content, message):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_bytes(content)
    _one_line_exit_2(capsys, ["train", "--resume", str(run)], message)


def test_a_game_option_of_the_wrong_type(tmp_path, capsys):
    argv = [
        "train",
        *TINY,
        "--env",
        "KuhnPoker-v2",
        "--set",
        'rollout.env_kwargs={KuhnPoker-v2={rounds="5"}}',
    ]
    _one_line_exit_2(capsys, [*argv, "--out", str(tmp_path / "r")], "rounds must be an integer from 1 to 100")


def test_an_out_that_is_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    _one_line_exit_2(capsys, ["train", *TINY, "--out", str(tmp_path / "f")], "is a file, not a folder")


@pytest.mark.parametrize(
    ("where", "content", "message"),
    [
        ("config.json", b"[1]", "holds a JSON list"),
        ("config.json", b"\xff{}", "not valid UTF-8 JSON"),
        ("eval/games/summary.json", b"[1]", "not a summary this report can read"),
        (
            "eval/games/summary.json",
            b'{"kind": "games", "results": {"x": {"all": {"games": 3}}}}',
            "no 'win_rate'",
        ),
        (
            "eval/games/summary.json",
            b'{"kind": "games", "results": {"x": {"all": {"games": 3, "win_rate": 0.5, '
            b'"win_ci": ["a", "b"]}}}}',
            "not a summary this report can read",
        ),  # fmt: skip
    ],
)
def test_report_on_damaged_files(tmp_path, capsys, where, content, message):
    run = make_run(tmp_path)
    (run / where).write_bytes(content)
    _one_line_exit_2(capsys, ["report", str(run)], message)


def test_report_skips_lines_that_are_not_utf8(tmp_path, capsys):
    run = make_run(tmp_path)
    for name in ("metrics.jsonl", "eval/games/transcripts.jsonl"):
        with (run / name).open("ab") as f:
            f.write(b'\n{"step": 9, "x": "\xff"}\n\xfe\n')
    assert main(["report", str(run)]) == 0


def test_markdown_of_a_damaged_phase_summary(tmp_path, capsys):
    run = make_run(tmp_path)
    phase = run / "eval" / "0_base"
    phase.mkdir(parents=True)
    (phase / "summary.json").write_text(
        json.dumps({"results": {"x": {"all": {"games": 2, "win_rate": 0.5}}}})
    )
    _one_line_exit_2(capsys, ["report", str(run), "--markdown", str(tmp_path / "m.md")], "no 'invalid_rate'")

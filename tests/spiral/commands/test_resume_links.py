"""Resuming a run folder with planted links stops with one line before anything is written."""

from __future__ import annotations

import os

from spiral.cli import main


def test_resume_refuses_a_run_folder_with_a_planted_link(tmp_path, tiny_run, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    run = tiny_run(1)
    (run / "transcripts").mkdir(exist_ok=True)
    (run / "transcripts" / "selfplay.jsonl").unlink(missing_ok=True)
    os.symlink(victim, run / "transcripts" / "selfplay.jsonl")
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert "symbolic link" in err and len(err.strip().splitlines()) == 1
    assert victim.read_text() == "precious\n"

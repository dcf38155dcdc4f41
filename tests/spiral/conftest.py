"""Shared fixture of the spiral tests: a seconds-long tiny run to resume, damage or plant things in."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY_RUN = [
    "--preset",
    "tiny-test",
    "--threads",
    "1",
    "--set",
    "run.plots=false",
    "--set",
    "eval.at_start=false",
]


@pytest.fixture()
def tiny_run(tmp_path):
    """make(steps, *extra) -> the folder of a finished tiny training run (run.out under tmp_path)."""
    from spiral.cli import main

    def make(steps: int = 0, *extra: str) -> Path:
        run = tmp_path / "run"
        assert main(["train", *TINY_RUN, *extra, "--steps", str(steps), "--out", str(run)]) == 0
        return run

    return make

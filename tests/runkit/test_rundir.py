"""create_run_dir: a new run never overwrites a folder that is not a run of its kind (--force: only one this
project wrote); claim_output: the same guard for every command's output folder."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from runkit.errors import UserError
from runkit.rundir import create_run_dir, is_run_of


def _stranger(tmp_path: Path) -> Path:
    """A folder of someone's files, named as a run's files are."""
    d = tmp_path / "mine"
    d.mkdir()
    (d / "config.json").write_text('{"my": "settings"}')
    (d / "metrics.jsonl").write_text("precious\n")
    (d / "report.html").write_text("<p>mine</p>")
    return d


def test_a_non_empty_folder_that_is_not_a_run_is_refused_and_left_alone(tmp_path):
    d = _stranger(tmp_path)
    before = {p.name: p.read_text() for p in d.iterdir()}
    with pytest.raises(
        UserError, match="is not empty and not a spiral run .*config.json.*did not write"
    ) as err:
        create_run_dir(d, {"a": 1}, kind="spiral")
    assert "\n" not in str(err.value)
    assert {p.name: p.read_text() for p in d.iterdir()} == before


def test_a_run_of_another_kind_is_refused(tmp_path):
    d = tmp_path / "tm-run"
    create_run_dir(d, {"a": 1}, kind="tm")
    with pytest.raises(UserError, match="not a spiral run"):
        create_run_dir(d, {"a": 1}, kind="spiral")


def test_force_never_writes_into_a_folder_of_the_users(tmp_path):
    d = _stranger(tmp_path)
    (d / "checkpoints" / "step_000001").mkdir(parents=True)
    (d / "checkpoints" / "step_000001" / "notes.txt").write_text("mine")
    before = sorted(str(p.relative_to(d)) for p in d.rglob("*"))
    with pytest.raises(UserError, match="did not write"):
        create_run_dir(d, {"a": 1}, kind="spiral", force=True)
    assert sorted(str(p.relative_to(d)) for p in d.rglob("*")) == before


def test_force_replaces_what_this_project_wrote(tmp_path):
    d = tmp_path / "tm-run"
    create_run_dir(d, {"a": 1}, kind="tm")
    with pytest.raises(UserError, match="--force"):
        create_run_dir(d, {"a": 1}, kind="spiral")
    run = create_run_dir(d, {"a": 1}, kind="spiral", force=True)
    assert json.loads(run.config.read_text()) == {"kind": "spiral", "a": 1} and is_run_of(d, "spiral")


def test_an_output_folder_is_claimed_once_and_a_strangers_is_refused(tmp_path):
    from runkit.rundir import OUTPUT_MARK, claim_output

    out = claim_output(tmp_path / "eval" / "games")
    assert (out / OUTPUT_MARK).is_file()
    (out / "summary.json").write_text("{}")
    assert claim_output(out) == out  # ours: reopened
    d = _stranger(tmp_path)
    with pytest.raises(UserError, match="not written by this project") as err:
        claim_output(d)
    assert "\n" not in str(err.value) and not (d / OUTPUT_MARK).exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        claim_output(tmp_path / "file")


def test_empty_folders_and_runs_of_the_same_kind_without_checkpoints_are_reused(tmp_path):
    (tmp_path / "empty").mkdir()
    create_run_dir(tmp_path / "empty", {"a": 1}, kind="spiral")
    create_run_dir(tmp_path / "empty", {"a": 2}, kind="spiral")  # a start that never reached a checkpoint
    assert json.loads((tmp_path / "empty" / "config.json").read_text())["a"] == 2


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_an_out_that_cannot_be_a_folder_is_one_line(tmp_path, where):
    f = tmp_path / "f.txt"
    f.write_text("x")
    path = f if where == "a file" else f / "run"
    with pytest.raises(UserError, match="is a file, not a folder|cannot create the run folder") as err:
        create_run_dir(path, {}, kind="spiral", force=True)
    assert "\n" not in str(err.value) and f.read_text() == "x"


@pytest.mark.parametrize("prog", ["spiral", "tm"])
def test_train_refuses_a_foreign_out_folder_with_exit_2(tmp_path, capsys, prog):
    d = _stranger(tmp_path)
    if prog == "spiral":
        from spiral.cli import main

        argv = ["train", "--preset", "tiny-test", "--threads", "1", "--out", str(d)]
    else:
        sys.path.insert(0, str(Path(__file__).parents[1] / "transition_matching"))
        from tm_testutil import tiny_argv

        from transition_matching.cli import main

        argv = ["train", *tiny_argv(), "--no-progress", "--out", str(d)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "did not write it" in err and "--force" not in err
    assert (d / "metrics.jsonl").read_text() == "precious\n"

"""A run folder from elsewhere cannot make a resume write outside it: links inside are refused, logs are never
appended through a link, plots replace a link instead of writing through it."""

from __future__ import annotations

import os

import pytest

from runkit.errors import UserError
from runkit.io import append_text, save_figure
from runkit.rundir import create_run_dir, open_run_dir


@pytest.mark.parametrize("planted", ["plots/loss.png", "transcripts/selfplay.jsonl", "transcripts/eval_step_000001.jsonl",
                                     "metrics.jsonl", "tensorboard"])  # fmt: skip
def test_opening_a_run_with_a_planted_link_is_refused_and_the_victim_untouched(tmp_path, planted):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    run = create_run_dir(tmp_path / "run", {"x": 1}, kind="spiral")
    link = run.path / planted
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(victim, link)
    with pytest.raises(UserError, match="symbolic link") as e:
        open_run_dir(run.path, "spiral")
    assert planted in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UserError, match="symbolic link"):
        create_run_dir(run.path, {"x": 1}, kind="spiral", force=True)
    assert victim.read_text() == "precious\n"


def test_a_run_folder_reached_through_a_link_of_the_users_own_still_opens(tmp_path):
    run = create_run_dir(tmp_path / "real", {"x": 1}, kind="spiral")
    os.symlink(run.path, tmp_path / "alias")
    assert open_run_dir(tmp_path / "alias", "spiral").path == tmp_path / "alias"


def test_logs_are_never_appended_through_a_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    os.symlink(victim, tmp_path / "log.jsonl")
    with pytest.raises(OSError):
        append_text(tmp_path / "log.jsonl", "row\n")
    assert victim.read_text() == "precious\n"
    append_text(tmp_path / "plain.jsonl", "a\n")
    append_text(tmp_path / "plain.jsonl", "b\n")
    assert (tmp_path / "plain.jsonl").read_text() == "a\nb\n"


def test_a_plot_replaces_a_link_instead_of_writing_through_it(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    os.symlink(victim, tmp_path / "loss.png")
    fig = plt.figure()
    save_figure(fig, tmp_path / "loss.png")
    plt.close(fig)
    assert victim.read_text() == "precious\n"
    assert not (tmp_path / "loss.png").is_symlink() and (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"

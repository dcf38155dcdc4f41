"""Settings and flags of the Ray backend: impossible combinations are one-line errors (no cluster needed)."""

from __future__ import annotations

import json
import sys

import pytest

from runkit.errors import UserError
from spiral.cli import main
from spiral.config import load_settings

TINY = ["--preset", "tiny-test", "--threads", "1", "--set", "run.plots=false"]


def test_flags_set_the_ray_settings(capsys):
    argv = ["train", *TINY, "--backend", "ray", "--rollout-workers", "2", "--async-rollout",
            "--ray-address", "auto", "--print-config"]  # fmt: skip
    assert main(argv) == 0
    run = json.loads(capsys.readouterr().out)["run"]
    assert (run["backend"], run["rollout_workers"], run["async_rollout"], run["ray_address"]) == (
        "ray",
        2,
        True,
        "auto",
    )
    assert load_settings("tiny-test").run.backend == "local"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["run.backend=ray", "run.rollout_workers=0"], "run.rollout_workers must be > 0"),
        (["run.backend=spark"], "run.backend must be one of local, ray"),
        (["run.async_rollout=true"], "need run.backend=ray"),
        (["run.rollout_workers=2"], "need run.backend=ray"),
    ],
)
def test_impossible_ray_settings_are_one_line_errors(overrides, message):
    with pytest.raises(UserError, match=message):
        load_settings("tiny-test", overrides)


def test_ray_backend_without_ray_installed_says_how_to_install_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without Ray looks like to find_spec
    with pytest.raises(UserError, match="needs Ray: pip install"):
        load_settings("tiny-test", ["run.backend=ray"])
    assert main(["train", *TINY, "--backend", "ray", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs Ray" in err and len(err.splitlines()) == 1

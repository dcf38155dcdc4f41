"""A resumed run does not send the API key to a host that only its saved config.json names."""

from __future__ import annotations

import pytest

from runkit.errors import UserError
from spiral.cli import main
from spiral.commands.train import check_api_hosts
from spiral.config import load_settings

HOST = "127.0.0.1:9"
SPEC = f"api:m@http://{HOST}/v1"


def test_resume_refuses_a_host_named_only_by_the_run_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SPIRAL_API_HOSTS", raising=False)
    run = tmp_path / "run"
    args = [
        "--preset",
        "tiny-test",
        "--threads",
        "1",
        "--set",
        "run.plots=false",
        "--set",
        "eval.at_start=false",
    ]
    assert main(["train", *args, "--opponent", SPEC, "--steps", "0", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert HOST in err and "SPIRAL_API_HOSTS" in err and len(err.strip().splitlines()) == 1


def test_hosts_named_on_the_command_line_or_in_the_environment_pass(monkeypatch):
    s = load_settings("tiny-test", [f"rollout.opponent={SPEC}"])
    monkeypatch.delenv("SPIRAL_API_HOSTS", raising=False)
    with pytest.raises(UserError, match=HOST):
        check_api_hosts(s, [])
    check_api_hosts(s, [f"rollout.opponent={SPEC}"])
    monkeypatch.setenv("SPIRAL_API_HOSTS", f"example.org,{HOST}")
    check_api_hosts(s, [])
    check_api_hosts(load_settings("tiny-test"), [])  # no API agent: nothing to check

"""The API key goes only to endpoints (scheme, host, port) that this command line or $SPIRAL_API_HOSTS names:
not to one that only a resumed run's config.json, a preset file or an opponent pool names, and not by a
substring match (spiral.agents.endpoints)."""

from __future__ import annotations

import pytest

from runkit.errors import UserError
from spiral.agents import endpoints
from spiral.agents.api_agent import ApiAgent
from spiral.cli import main
from spiral.config import load_settings

HOST = "127.0.0.1:9"
SPEC = f"api:m@http://{HOST}/v1"


def test_resume_refuses_a_host_named_only_by_the_run_folder(tiny_run, capsys, monkeypatch):
    monkeypatch.delenv("SPIRAL_API_HOSTS", raising=False)
    run = tiny_run(0, "--opponent", SPEC)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert HOST in err and "SPIRAL_API_HOSTS" in err and len(err.strip().splitlines()) == 1


def test_hosts_named_on_the_command_line_or_in_the_environment_pass(monkeypatch):
    s = load_settings("tiny-test", [f"rollout.opponent={SPEC}"])
    monkeypatch.delenv("SPIRAL_API_HOSTS", raising=False)
    with pytest.raises(UserError, match=HOST):
        endpoints.check(s, [])
    endpoints.check(s, [f"rollout.opponent={SPEC}"])
    monkeypatch.setenv("SPIRAL_API_HOSTS", f"example.org,{HOST}")
    endpoints.check(s, [])
    endpoints.check(load_settings("tiny-test"), [])  # no API agent: nothing to check


def test_a_port_that_only_starts_like_the_named_one_is_refused(monkeypatch):
    monkeypatch.delenv("SPIRAL_API_HOSTS", raising=False)
    saved = load_settings("tiny-test", ["rollout.opponent=api:m@http://127.0.0.1:1808/v1"])
    with pytest.raises(UserError, match="127.0.0.1:1808"):
        endpoints.check(saved, ["--opponent", "api:m@http://127.0.0.1:18081/v1"])
    with pytest.raises(UserError, match="https://127.0.0.1:18081"):  # same host and port, other scheme
        endpoints.check(load_settings("tiny-test", ["rollout.opponent=api:m@https://127.0.0.1:18081/v1"]),
                        ["--opponent", "api:m@http://127.0.0.1:18081/v1"])  # fmt: skip
    monkeypatch.setenv("SPIRAL_API_HOSTS", "127.0.0.1:18081")
    with pytest.raises(UserError):
        endpoints.check(saved, [])


@pytest.mark.parametrize(
    "override",
    [
        'rollout.pool_agents=["random", "api:m@http://127.0.0.1:18082/v1"]',
        'eval.opponents=["random", "api:m@http://127.0.0.1:18082/v1"]',
        "rollout.opponent=api:m@http://127.0.0.1:18082/v1",
    ],
)
def test_every_setting_that_names_an_agent_is_checked(override, monkeypatch):
    monkeypatch.delenv("SPIRAL_API_HOSTS", raising=False)
    s = load_settings("tiny-test", [override])
    with pytest.raises(UserError, match="127.0.0.1:18082"):
        endpoints.check(s, [])


def test_a_pool_agent_planted_in_a_run_folder_stops_the_resume(tiny_run, capsys, monkeypatch):
    import json

    monkeypatch.delenv("SPIRAL_API_HOSTS", raising=False)
    run = tiny_run(0)
    cfg = json.loads((run / "config.json").read_text())
    cfg["rollout"]["pool_agents"] = ["api:m@http://127.0.0.1:18082/v1"]
    (run / "config.json").write_text(json.dumps(cfg))
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "127.0.0.1:18082" in err and len(err.strip().splitlines()) == 1


def test_a_preset_file_cannot_name_a_host_for_the_command(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SPIRAL_API_HOSTS", raising=False)
    preset = tmp_path / "foreign.toml"
    preset.write_text('base = "tiny-test"\n[rollout]\nopponent = "api:m@http://127.0.0.1:18083/v1"\n')
    assert main(["train", "--preset", str(preset), "--out", str(tmp_path / "run"), "--steps", "0"]) == 2
    err = capsys.readouterr().err
    assert "127.0.0.1:18083" in err and len(err.strip().splitlines()) == 1


def test_an_api_agent_is_refused_at_construction_while_a_command_runs(monkeypatch):
    monkeypatch.delenv("SPIRAL_API_HOSTS", raising=False)
    try:
        endpoints.restrict(["--players", "random,api:m@http://localhost:8000/v1"])
        ApiAgent("m", "http://localhost:8000/v1")  # named: fine
        with pytest.raises(UserError, match="localhost:8001"):
            ApiAgent("m", "http://localhost:8001/v1")
        with pytest.raises(UserError, match="malformed API URL"):
            ApiAgent("m", "http://[::1/v1")
    finally:
        endpoints.unrestricted()
    ApiAgent("m", "http://localhost:8001/v1")  # outside a command (library use): not restricted


def test_environment_entries_and_their_errors(monkeypatch):
    monkeypatch.setenv("SPIRAL_API_HOSTS", "https://api.example.org/v1, localhost:8000 ,example.net")
    env = endpoints.from_environment()
    assert endpoints.is_allowed(("https", "api.example.org", 443), set(), env)
    assert not endpoints.is_allowed(("http", "api.example.org", 80), set(), env)
    assert endpoints.is_allowed(("http", "localhost", 8000), set(), env)
    assert endpoints.is_allowed(("https", "example.net", 443), set(), env)
    assert not endpoints.is_allowed(("https", "example.net", 8443), set(), env)
    monkeypatch.setenv("SPIRAL_API_HOSTS", "http://[::1")
    with pytest.raises(UserError, match="malformed"):
        endpoints.from_environment()


def test_a_malformed_api_url_on_the_command_line_is_one_line(tmp_path, capsys):
    rc = main(["eval", "league", "--players", "random,api:m@http://[::1/v1", "--games", "KuhnPoker-v2",
               "--out", str(tmp_path / "league")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "malformed API URL" in err and len(err.splitlines()) == 1

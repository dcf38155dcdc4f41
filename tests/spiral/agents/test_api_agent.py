"""The API agent against a tiny local HTTP server: success, retry, timeout, refusal, key hygiene."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from spiral.agents.api_agent import ApiAgent, ApiError

KEY = "sk-test-SECRET-123456"


class _Server:
    """Serves scripted replies: each entry is (status, content) or ('sleep', seconds)."""

    def __init__(self) -> None:
        self.script: list[tuple] = []
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(
                    {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
                )
                kind, value = outer.script.pop(0) if outer.script else (200, "\\boxed{bet}")
                if kind == "sleep":
                    time.sleep(value)
                    kind, value = 200, "\\boxed{bet}"
                payload = json.dumps({"choices": [{"message": {"content": value}}]}).encode()
                try:
                    self.send_response(kind)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the client gave up (timeout test)
                    pass

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server()
    thread = threading.Thread(target=s.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def _agent(server: _Server, **kw) -> ApiAgent:
    return ApiAgent("test-model", server.url, api_key=KEY, backoff=0.0, **kw)


def test_success_returns_the_legal_action(server: _Server) -> None:
    server.script = [(200, "Betting with a King. \\boxed{bet}")]
    agent = _agent(server)
    assert agent.act("You are Player 0 ...", ["[check]", "[bet]"]) == "[bet]"
    req = server.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == f"Bearer {KEY}"
    assert (
        req["body"]["model"] == "test-model"
        and req["body"]["messages"][1]["content"] == "You are Player 0 ..."
    )
    assert "\\boxed" in agent.last_reply


def test_unparseable_reply_is_returned_raw_for_the_game_to_judge(server: _Server) -> None:
    server.script = [(200, "I am not sure.")]
    assert _agent(server).act("obs", ["[check]", "[bet]"]) == "I am not sure."


def test_retries_after_a_server_error(server: _Server) -> None:
    server.script = [(500, "oops"), (503, "busy"), (200, "\\boxed{check}")]
    assert _agent(server, retries=3).act("obs", ["[check]", "[bet]"]) == "[check]"
    assert len(server.requests) == 3


def test_gives_up_after_bounded_retries(server: _Server) -> None:
    server.script = [(500, "x")] * 5
    with pytest.raises(ApiError, match="failed after 3 attempts: HTTP 500") as err:
        _agent(server, retries=2).act("obs", ["[bet]"])
    assert len(server.requests) == 3 and KEY not in str(err.value)


def test_timeout_is_reported_without_the_key(server: _Server) -> None:
    server.script = [("sleep", 1.0)]
    start = time.monotonic()
    with pytest.raises(ApiError, match="timed out") as err:
        _agent(server, timeout=0.2, retries=0).act("obs", ["[bet]"])
    assert time.monotonic() - start < 1.0
    assert KEY not in str(err.value) and KEY not in repr(err.value)


def test_refused_key_is_not_retried_and_not_shown(server: _Server) -> None:
    server.script = [(401, "bad key")]
    with pytest.raises(ApiError, match="SPIRAL_API_KEY") as err:
        _agent(server, retries=3).act("obs", ["[bet]"])
    assert len(server.requests) == 1 and KEY not in str(err.value)


def test_key_never_in_repr_or_str(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPIRAL_API_KEY", KEY)
    agent = ApiAgent("m", "http://127.0.0.1:9/v1")
    assert agent._key == KEY
    assert KEY not in repr(agent) and KEY not in str(agent) and KEY not in agent.name


def test_connection_refused_is_an_api_error() -> None:
    agent = ApiAgent("m", "http://127.0.0.1:9/v1", api_key=KEY, retries=1, backoff=0.0, timeout=1.0)
    with pytest.raises(ApiError, match="connection failed|timed out") as err:
        agent.act("obs", ["[bet]"])
    assert KEY not in str(err.value)

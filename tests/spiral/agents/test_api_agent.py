"""The API agent against a tiny local HTTP server: success, retry, timeout, refusal, key hygiene."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
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
                if kind == "custom":  # value(handler) writes the whole response itself
                    with contextlib.suppress(OSError):  # OSError: the client gave up
                        value(self)
                    return
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


def _send_slowly(data: bytes, every: float) -> Callable[[BaseHTTPRequestHandler], None]:
    def write(handler: BaseHTTPRequestHandler) -> None:
        for i in range(len(data)):
            handler.wfile.write(data[i : i + 1])
            handler.wfile.flush()
            time.sleep(every)

    return write


def _ok_body(content: object = "\\boxed{bet}") -> bytes:
    return json.dumps({"choices": [{"message": {"content": content}}]}).encode()


def _response(body: bytes, headers: dict[str, str] | None = None) -> bytes:
    lines = ["HTTP/1.1 200 OK", "Content-Type: application/json", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@pytest.mark.parametrize("slow_part", ["headers", "body"])
def test_the_timeout_bounds_the_whole_request_not_each_read(server: _Server, slow_part: str) -> None:
    # One byte every 0.1 s: each read is quick, the whole reply would take over 6 s.
    body = _ok_body()
    if slow_part == "headers":
        head = _response(b"")
        write = lambda h: (_send_slowly(head, 0.1)(h), h.wfile.write(body))  # noqa: E731
    else:
        head = _response(b"", {"Content-Length": str(len(body))})
        write = lambda h: (h.wfile.write(head), _send_slowly(body, 0.1)(h))  # noqa: E731
    server.script = [("custom", write)]
    with pytest.raises(ApiError, match="failed after 1 attempts: timed out after 0.5 s"):
        _agent(server, timeout=0.5, retries=0).act("obs", ["[bet]"])


def test_a_dripping_server_holds_a_move_no_longer_than_its_budget(server: _Server) -> None:
    """Every attempt drips one byte at a time; retries and backoff stop at the move's budget, not 4 x timeout."""
    body = _ok_body()
    head = _response(b"", {"Content-Length": str(len(body))})
    server.script = [("custom", lambda h: (h.wfile.write(head), _send_slowly(body, 0.1)(h)))] * 6
    start = time.monotonic()
    with pytest.raises(ApiError, match=r"the move's budget: 1.2 s, --api-move-seconds"):
        _agent(server, timeout=0.5, retries=5, move_seconds=1.2).act("obs", ["[bet]"])
    assert time.monotonic() - start < 1.8 and 2 <= len(server.requests) <= 4


def test_the_move_budget_is_a_command_line_option(capsys) -> None:
    from spiral.agents import api_agent
    from spiral.cli import main

    assert main(["--api-move-seconds", "0", "play", "--help"]) == 2
    assert "--api-move-seconds must be a positive number" in capsys.readouterr().err
    assert main(["--api-move-seconds", "nan", "report", "/nonexistent"]) == 2
    assert api_agent.MOVE_SECONDS["default"] == 180.0  # restored after the command


def test_a_reply_over_the_size_cap_is_refused(server: _Server) -> None:
    big = _ok_body("\\boxed{bet}" + " " * (5 * 2**20))  # 5 MB, no Content-Length: read until the cap
    server.script = [("custom", lambda h: h.wfile.write(_response(big)))]
    with pytest.raises(ApiError, match="sent more than 4,194,304 bytes; the limit is 4,194,304"):
        _agent(server, retries=0).act("obs", ["[bet]"])


def test_a_declared_length_over_the_cap_is_refused_before_reading(server: _Server) -> None:
    head = _response(b"", {"Content-Length": "300000000"})
    server.script = [("custom", lambda h: h.wfile.write(head + b'{"choices"'))]
    with pytest.raises(ApiError, match="declares 300,000,000 bytes"):
        _agent(server, retries=0, max_reply_bytes=1000).act("obs", ["[bet]"])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_ok_body(42), r"choices\[0\]\.message\.content is a JSON int, not a string"),
        (json.dumps({"choices": []}).encode(), "choices is missing or empty"),
        (json.dumps({"choices": [{"message": "hi"}]}).encode(), r"choices\[0\]\.message is missing"),
        (json.dumps({"choices": ["x"]}).encode(), r"choices\[0\]\.message is missing"),
        (b"[1, 2]", "the reply is a JSON list, not an object"),
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b"[" * 200_000, "not UTF-8 JSON"),  # nesting deeper than the JSON decoder's recursion
    ],
)
def test_a_reply_of_the_wrong_shape_is_one_clear_error(server: _Server, body: bytes, message: str) -> None:
    server.script = [("custom", lambda h: h.wfile.write(_response(body, {"Content-Length": str(len(body))})))]
    with pytest.raises(ApiError, match=message) as err:
        _agent(server, retries=0).act("obs", ["[bet]"])
    assert "\n" not in str(err.value)


def test_null_content_is_an_empty_reply(server: _Server) -> None:
    body = _ok_body(None)
    server.script = [("custom", lambda h: h.wfile.write(_response(body, {"Content-Length": str(len(body))})))]
    assert _agent(server, retries=0).complete("obs") == ""


@pytest.mark.parametrize(
    ("raw", "name"), [(b"NOT HTTP AT ALL\r\n\r\n", "BadStatusLine"), (b"", "RemoteDisconnected")]
)
def test_a_broken_or_dropped_reply_is_retried_then_one_error(server: _Server, raw: bytes, name: str) -> None:
    server.script = [("custom", lambda h: h.wfile.write(raw))] * 2
    with pytest.raises(ApiError, match=f"failed after 2 attempts: connection failed \\({name}\\)"):
        _agent(server, retries=1).act("obs", ["[bet]"])
    assert len(server.requests) == 2


def test_a_redirect_is_not_followed_and_the_key_stays_home(server: _Server) -> None:
    elsewhere = _Server()
    thread = threading.Thread(
        target=elsewhere.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    try:
        head = _response(b"", {"Location": f"{elsewhere.url}/chat/completions", "Content-Length": "0"})
        redirect = head.replace(b"200 OK", b"307 Temporary Redirect")
        server.script = [("custom", lambda h: h.wfile.write(redirect))]
        with pytest.raises(ApiError, match="redirect \\(HTTP 307\\), which is not followed"):
            _agent(server, retries=0).act("obs", ["[bet]"])
        assert elsewhere.requests == []
    finally:
        elsewhere.httpd.shutdown()
        elsewhere.httpd.server_close()

"""An agent backed by an OpenAI-compatible chat-completions endpoint (urllib; no extra dependency).

The API key is read from an environment variable (SPIRAL_API_KEY by default) or passed in; it is sent only in
the Authorization header and never appears in repr(), logs or error messages.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request

from runkit.errors import UserError
from spiral.agents import endpoints
from spiral.agents.base import Agent
from spiral.prompting import parse_action

DEFAULT_KEY_ENV = "SPIRAL_API_KEY"
SYSTEM_PROMPT = (
    "You are playing a two-player zero-sum game. Make valid actions to win. Think step by step, then put "
    "your final action in \\boxed{}, for example \\boxed{[bet]}."
)
_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
MOVE_SECONDS = {
    "default": 180.0
}  # a move's whole budget, all attempts and backoff (`spiral --api-move-seconds`)
MAX_REPLY_BYTES = 4 * 2**20  # a chat completion of a few thousand tokens is tens of KB
_CHUNK = 64 * 1024


class ApiError(UserError):
    """The endpoint failed after all retries or rejected the request."""


class _Deadline:
    """One request's time limit: when it passes, every connection the request opened is shut down.

    A socket timeout bounds each read only; a server that sends a byte every few seconds would otherwise hold
    the request open for as long as it likes.
    """

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()

    def connection(self, cls: type[http.client.HTTPConnection]):
        """A factory for urllib's do_open whose connections report their socket once connected.

        (urllib drops the connection's own reference to the socket once the headers are read; the response
        keeps the socket open, so shutting it down still ends a body that is being read.)
        """

        def make(host: str, **kwargs) -> http.client.HTTPConnection:
            conn = cls(host, **kwargs)
            connect = conn.connect

            def connect_and_watch() -> None:
                connect()
                with self._lock:
                    self._sockets.append(conn.sock)
                    if self.expired:
                        _shutdown(conn.sock)

            conn.connect = connect_and_watch
            return conn

        return make

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    """End both directions of a connection; a blocked read returns at once."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _WatchedHTTP(urllib.request.HTTPHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self.deadline = deadline

    def http_open(self, req):
        return self.do_open(self.deadline.connection(http.client.HTTPConnection), req)


class _WatchedHTTPS(urllib.request.HTTPSHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self.deadline = deadline

    def https_open(self, req):
        return self.do_open(self.deadline.connection(http.client.HTTPSConnection), req, context=self._context)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are not followed: urllib would resend the Authorization header to wherever they point."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def reply_content(payload: object, base_url: str) -> str:
    """choices[0].message.content of a decoded chat-completions reply; ApiError naming what is missing."""
    where = "the reply"
    try:
        if not isinstance(payload, dict):
            raise TypeError(f"{where} is a JSON {type(payload).__name__}, not an object")
        choices = payload.get("choices")
        where = "choices"
        if not isinstance(choices, list) or not choices:
            raise TypeError(f"{where} is missing or empty")
        message = choices[0].get("message") if isinstance(choices[0], dict) else None
        where = "choices[0].message"
        if not isinstance(message, dict):
            raise TypeError(f"{where} is missing or not an object")
        content = message.get("content")
        if content is None:
            return ""
        if not isinstance(content, str):
            raise TypeError(f"{where}.content is a JSON {type(content).__name__}, not a string")
    except TypeError as e:
        raise ApiError(f"{base_url} answered with an unexpected reply: {e}") from None
    return content


class ApiAgent(Agent):
    """Asks a chat model for the action; returns the legal action it names, or its raw reply."""

    def __init__(
        self,
        model: str,
        base_url: str,
        api_key: str | None = None,
        key_env: str = DEFAULT_KEY_ENV,
        temperature: float = 0.7,
        top_p: float = 0.95,
        max_tokens: int = 2048,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 1.0,
        system_prompt: str = SYSTEM_PROMPT,
        max_reply_bytes: int = MAX_REPLY_BYTES,
        move_seconds: float | None = None,
    ) -> None:
        endpoints.permit(base_url)  # the key goes only where the user said (spiral.agents.endpoints)
        self.model = model
        self.base_url = base_url.rstrip("/")
        self._key = api_key if api_key is not None else os.environ.get(key_env, "")
        self.key_env = key_env
        self.temperature, self.top_p, self.max_tokens = temperature, top_p, max_tokens
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.system_prompt = system_prompt
        self.max_reply_bytes = max_reply_bytes
        self.move_seconds = MOVE_SECONDS["default"] if move_seconds is None else move_seconds
        self.name = f"api:{model}"
        self.last_reply = ""

    def __repr__(self) -> str:
        return f"ApiAgent(model={self.model!r}, base_url={self.base_url!r}, key_env={self.key_env!r})"

    def act(self, observation: str, legal_actions: list[str], env=None) -> str:
        """The legal action the reply names (lenient), else the reply itself for the game to judge."""
        self.last_reply = self.complete(observation)
        return parse_action(self.last_reply, legal_actions, mode="lenient") or self.last_reply

    def complete(self, user_text: str) -> str:
        """One chat completion with bounded retries and exponential backoff."""
        body = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": self.system_prompt},
                {"role": "user", "content": user_text},
            ],
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
        }
        last = "no attempt made"
        end = time.monotonic() + self.move_seconds  # the whole move: every attempt and every backoff
        tried = 0
        for attempt in range(self.retries + 1):
            if attempt:
                pause = self.backoff * 2 ** (attempt - 1)
                if time.monotonic() + pause >= end:
                    break
                time.sleep(pause)
            left = end - time.monotonic()
            if left <= 0:
                break
            limit = min(self.timeout, left)
            deadline = _Deadline(limit)
            tried += 1
            try:
                with deadline:
                    raw = self._post(body, deadline)
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code} {e.reason}"
                if 300 <= e.code < 400:
                    raise ApiError(
                        f"{self.base_url} answered with a redirect (HTTP {e.code}), which is not followed "
                        "(it would carry the API key elsewhere); give the final address as BASE_URL"
                    ) from None
                if e.code in (401, 403):
                    raise ApiError(
                        f"{self.base_url} refused the API key (HTTP {e.code}); check ${self.key_env}"
                    ) from None
                if e.code not in _RETRY_STATUS:
                    raise ApiError(f"{self.base_url} rejected the request: {last}") from None
                continue
            except (OSError, http.client.HTTPException) as e:  # URLError, timeouts, resets, broken replies
                reason = e.reason if isinstance(e, urllib.error.URLError) else e
                if deadline.expired or isinstance(reason, TimeoutError):
                    last = f"timed out after {limit:g} s"
                else:
                    last = f"connection failed ({type(reason).__name__})"
                continue
            if deadline.expired:  # the shutdown can look like a clean end of the body
                last = f"timed out after {limit:g} s"
                continue
            return self._decode(raw)
        raise ApiError(
            f"request to {self.base_url} failed after {tried} attempts: {last} (the move's budget: "
            f"{self.move_seconds:g} s, --api-move-seconds)"
        )

    def _post(self, body: dict, deadline: _Deadline) -> bytes:
        """POST to /chat/completions and return the reply body, at most max_reply_bytes of it."""
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        req = urllib.request.Request(
            f"{self.base_url}/chat/completions",
            data=json.dumps(body).encode(),
            headers=headers,
            method="POST",
        )
        opener = urllib.request.build_opener(_WatchedHTTP(deadline), _WatchedHTTPS(deadline), _NoRedirect())
        with opener.open(req, timeout=self.timeout) as resp:
            declared = resp.headers.get("Content-Length")
            if declared is not None and declared.strip().isdigit() and int(declared) > self.max_reply_bytes:
                raise self._too_large(f"declares {int(declared):,} bytes")
            chunks, size = [], 0
            while chunk := resp.read1(_CHUNK):
                chunks.append(chunk)
                size += len(chunk)
                if size > self.max_reply_bytes:
                    raise self._too_large(f"sent more than {self.max_reply_bytes:,} bytes")
        return b"".join(chunks)

    def _too_large(self, what: str) -> ApiError:
        return ApiError(
            f"{self.base_url}'s reply {what}; the limit is {self.max_reply_bytes:,} (max_reply_bytes)"
        )

    def _decode(self, raw: bytes) -> str:
        """The first choice's text of a reply body."""
        try:
            payload = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError):
            raise ApiError(f"{self.base_url} answered with something that is not UTF-8 JSON") from None
        return reply_content(payload, self.base_url)

"""An agent backed by an OpenAI-compatible chat-completions endpoint (urllib; no extra dependency).

The API key is read from an environment variable (SPIRAL_API_KEY by default) or passed in; it is sent only in
the Authorization header and never appears in repr(), logs or error messages.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request

from runkit.errors import UserError
from spiral.agents.base import Agent
from spiral.prompting import parse_action

DEFAULT_KEY_ENV = "SPIRAL_API_KEY"
SYSTEM_PROMPT = (
    "You are playing a two-player zero-sum game. Make valid actions to win. Think step by step, then put "
    "your final action in \\boxed{}, for example \\boxed{[bet]}."
)
_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class ApiError(UserError):
    """The endpoint failed after all retries or rejected the request."""


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
    ) -> None:
        self.model = model
        self.base_url = base_url.rstrip("/")
        self._key = api_key if api_key is not None else os.environ.get(key_env, "")
        self.key_env = key_env
        self.temperature, self.top_p, self.max_tokens = temperature, top_p, max_tokens
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.system_prompt = system_prompt
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
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                return self._post(body)
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code} {e.reason}"
                if e.code in (401, 403):
                    raise ApiError(
                        f"{self.base_url} refused the API key (HTTP {e.code}); check ${self.key_env}"
                    ) from None
                if e.code not in _RETRY_STATUS:
                    raise ApiError(f"{self.base_url} rejected the request: {last}") from None
            except TimeoutError:
                last = f"timed out after {self.timeout:g} s"
            except urllib.error.URLError as e:
                timed_out = isinstance(e.reason, TimeoutError)
                last = (
                    f"timed out after {self.timeout:g} s"
                    if timed_out
                    else f"connection failed ({type(e.reason).__name__})"
                )
        raise ApiError(f"request to {self.base_url} failed after {self.retries + 1} attempts: {last}")

    def _post(self, body: dict) -> str:
        """POST to /chat/completions and return the first choice's text."""
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        req = urllib.request.Request(
            f"{self.base_url}/chat/completions",
            data=json.dumps(body).encode(),
            headers=headers,
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            raw = resp.read()
        try:
            return json.loads(raw.decode("utf-8"))["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError):
            raise ApiError(f"{self.base_url} answered without choices[0].message.content") from None

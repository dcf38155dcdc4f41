"""Where the API key may go: only to endpoints the user named, on this command line or in $SPIRAL_API_HOSTS.

An endpoint is (scheme, host, port), ports defaulting to the scheme's (80, 443); two endpoints are the same only
when all three are equal, never by a substring test. A `spiral` command first collects the endpoints of every
`api:MODEL@URL` its command line names plus those of $SPIRAL_API_HOSTS (`restrict`); from then on an `ApiAgent`
for any other endpoint is refused with one line at construction, before a request is made, wherever its spec
came from: a resumed run's config.json, a preset file, an opponent pool, a league's player list. Commands that
read saved settings also check them up front (`check`, over every string of the settings, so a setting added
later cannot slip past it). A library user who builds agents without the CLI is not restricted.

$SPIRAL_API_HOSTS holds comma-separated entries: a URL (`https://api.example.org/v1`: that scheme, host and
port) or `HOST[:PORT]` (either scheme; without a port, the scheme's default port).
"""

from __future__ import annotations

import dataclasses
import os
import re
from urllib.parse import urlsplit

from runkit.errors import UserError

API_HOSTS_ENV = "SPIRAL_API_HOSTS"
DEFAULT_PORTS = {"http": 80, "https": 443}
_SPEC = re.compile(r"api:[^@\s]*@(\S+)")
_state: dict[str, set | None] = {"allowed": None}

Endpoint = tuple[str, str, int]


def endpoint(url: str) -> Endpoint:
    """(scheme, host, port) of an http(s) URL; a malformed one is a one-line UserError."""
    try:
        parts = urlsplit(url.strip())
        scheme, host, port = parts.scheme.lower(), (parts.hostname or "").lower(), parts.port
    except ValueError as e:
        raise UserError(f"malformed API URL {url!r}: {e}") from None
    if scheme not in DEFAULT_PORTS or not host:
        raise UserError(f"malformed API URL {url!r}: write http(s)://HOST[:PORT]/PATH")
    return scheme, host, port if port is not None else DEFAULT_PORTS[scheme]


def spec_urls(text: str) -> list[str]:
    """The URLs of the `api:MODEL@URL` specs in a piece of text (a command-line word, a setting's value)."""
    return [m.rstrip(",;)]}'\"") for m in _SPEC.findall(text)]


def strings_in(obj) -> list[str]:
    """Every string inside a settings object: dataclass fields, dicts (keys and values), lists, tuples."""
    if isinstance(obj, str):
        return [obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return [s for f in dataclasses.fields(obj) for s in strings_in(getattr(obj, f.name))]
    if isinstance(obj, dict):
        return [s for k, v in obj.items() for s in (*strings_in(k), *strings_in(v))]
    if isinstance(obj, (list, tuple, set)):
        return [s for v in obj for s in strings_in(v)]
    return []


def from_environment() -> set[tuple[str | None, str, int | None]]:
    """The entries of $SPIRAL_API_HOSTS: (scheme or None for either, host, port or None for the default)."""
    out: set[tuple[str | None, str, int | None]] = set()
    for entry in os.environ.get(API_HOSTS_ENV, "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        if "://" in entry:
            out.add(endpoint(entry))
            continue
        try:
            parts = urlsplit("//" + entry)
            host, port = (parts.hostname or "").lower(), parts.port
        except ValueError:
            host, port = "", None
        if not host:
            raise UserError(f"{API_HOSTS_ENV} entry {entry!r} is not HOST[:PORT] or a URL")
        out.add((None, host, port))
    return out


def named(words: list[str]) -> set[Endpoint]:
    """Endpoints of the `api:` specs on a command line."""
    return {endpoint(url) for word in words for url in spec_urls(word)}


def is_allowed(ep: Endpoint, command_line: set[Endpoint], env) -> bool:
    """Whether `ep` equals an endpoint the command line or the environment names."""
    if ep in command_line:
        return True
    scheme, host, port = ep
    for s, h, p in env:
        if (
            h == host
            and (s is None or s == scheme)
            and (p if p is not None else DEFAULT_PORTS[scheme]) == port
        ):
            return True
    return False


def restrict(words: list[str]) -> None:
    """From now on in this process, API agents may reach only what `words` (a command line) or the env name."""
    _state["allowed"] = (named(words), from_environment())


def unrestricted() -> None:
    """Lift `restrict` (tests, library use after a CLI call in the same process)."""
    _state["allowed"] = None


def permit(url: str) -> None:
    """Raise a one-line UserError unless the API key may go to `url` under the current restriction."""
    ep = endpoint(url)
    allowed = _state["allowed"]
    if allowed is not None and not is_allowed(ep, *allowed):
        raise UserError(_refusal([ep]))


def check(settings, words: list[str]) -> None:
    """Refuse settings that name an API endpoint neither `words` (the command line) nor the env name."""
    cmd, env = named(words), from_environment()
    bad = sorted({ep for s in strings_in(settings) for url in spec_urls(s) if not is_allowed(ep := endpoint(url),
                                                                                            cmd, env)})  # fmt: skip
    if bad:
        raise UserError(_refusal(bad))


def _refusal(eps: list[Endpoint]) -> str:
    where = ", ".join(f"{s}://{h}:{p}" for s, h, p in eps)
    return (
        f"these settings send requests (with the API key) to {where}, which neither this command line nor "
        f"${API_HOSTS_ENV} names; name the agent again (--opponent / --set / --players) or set "
        f"{API_HOSTS_ENV}"
    )

"""Atomic file writes: write a temp file in the same folder, fsync, then rename over the target."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` so that a reader sees either the old file or the new one, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def append_text(path: str | os.PathLike, text: str) -> None:
    """Append UTF-8 text to a log file, creating it; a symbolic link at `path` is refused, never followed."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o666)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(text)


def save_figure(fig, path: str | os.PathLike, **kwargs) -> Path:
    """A matplotlib figure written as PNG atomically: a link at `path` is replaced, never written through."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", **kwargs)
    return atomic_write_bytes(path, buf.getvalue())


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write `obj` as indented JSON."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def truncate_jsonl(path: str | os.PathLike, max_step: int, key: str = "step") -> int:
    """Rewrite an append-only JSONL log without the rows whose `key` exceeds `max_step` (work lost with an
    interrupted run, replayed after a resume); unreadable lines are dropped too. Returns the rows removed."""
    p = Path(path)
    if not p.is_file():
        return 0
    kept, removed = [], 0
    for line in p.read_bytes().splitlines():
        try:
            row = json.loads(line.decode("utf-8"))
        except ValueError:
            removed += 1
            continue
        step = row.get(key) if isinstance(row, dict) else None
        if isinstance(step, (int, float)) and not isinstance(step, bool) and step <= max_step:
            kept.append(row)
        else:
            removed += 1
    if removed:
        atomic_write_text(p, "".join(json.dumps(r) + "\n" for r in kept))
    return removed

"""Typed settings: dataclass fields that carry their help text."""

from __future__ import annotations

import math
import tomllib
from dataclasses import field
from typing import Any

from runkit.errors import UserError


def opt(default: Any, help: str) -> Any:
    """A dataclass field with a default (copied when mutable) and a help string in its metadata."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help})
    return field(default=default, metadata={"help": help})


def parse_value(raw: str) -> Any:
    """A TOML value (1e-5, true, [1, 2], "x") or, failing that, the raw text."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def read_preset_text(path) -> str:
    """A preset file's text: one-line UserError for a file that is not UTF-8 text or cannot be read."""
    from pathlib import Path

    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"preset file {path} is not UTF-8 text") from None
    except OSError as e:
        raise UserError(f"cannot read preset file {path}: {e.strerror or e}") from None


def parse_toml(text: str, what: str) -> dict[str, Any]:
    """TOML text as a table: one-line UserError for invalid TOML or nesting too deep to parse."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{what} is not valid TOML: {e}") from None
    except RecursionError:
        raise UserError(f"{what} nests arrays or tables too deeply to read") from None


MAX_TEXT = 4096  # characters of a text setting (a path, a spec, a name)
MAX_INT = 2**63 - 1


def coerce(key: str, type_name: str, value: Any) -> Any:
    """Convert `value` to the declared type, or raise a one-line UserError: numbers must be finite (NaN, inf and
    1e400 never are), integers fit in 64 bits, text is at most MAX_TEXT characters."""
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    bad = UserError(f"setting {key} expects {type_name}, got {shown}")
    if type_name == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise bad
    if type_name == "int":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad
        if int(value) != value or abs(int(value)) > MAX_INT:
            raise bad
        return int(value)
    if type_name == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad
        return float(value)
    if type_name == "str":
        if isinstance(value, (dict, list)) or len(str(value)) > MAX_TEXT:
            raise bad
        return str(value)
    if type_name.startswith("list"):
        items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise bad
        inner = type_name[5:-1]
        return [coerce(key, inner, v if inner == "str" else parse_value(str(v))) for v in items]
    if type_name.startswith("dict"):
        if not isinstance(value, dict):
            raise bad
        return value
    raise bad


def merge_tables(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """b over a, recursively for tables."""
    out = dict(a)
    for k, v in b.items():
        out[k] = merge_tables(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out

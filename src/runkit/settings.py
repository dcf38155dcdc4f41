"""Typed settings: dataclass fields that carry their help text."""

from __future__ import annotations

from dataclasses import field
from typing import Any


def opt(default: Any, help: str) -> Any:
    """A dataclass field with a default (copied when mutable) and a help string in its metadata."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help})
    return field(default=default, metadata={"help": help})

"""Helpers shared by the TM tests (a uniquely named module: tests/ is not a package)."""

from __future__ import annotations

TINY = {"width": 16, "depth": 1, "heads": 2, "head_width": 16, "head_depth": 1, "n_points": 2000}


def tiny_argv(**extra) -> list[str]:
    """CLI flags for a tiny model, plus extra --key value pairs."""
    out = []
    for k, v in {**TINY, "steps": 20, "batch_size": 32, "log_every": 5, "ckpt_every": 10, **extra}.items():
        out += [f"--{k.replace('_', '-')}", str(v)]
    return out

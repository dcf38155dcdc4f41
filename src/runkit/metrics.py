"""Metrics: one JSON line per logged step (metrics.jsonl) plus TensorBoard scalars, resumable."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from runkit.io import append_text, atomic_write_text


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Read metrics.jsonl: the JSON objects with a numeric step. A torn last line (a crash mid-write) and any
    line that is not such an object (not UTF-8, not JSON, another value) are ignored."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_bytes().splitlines():
        try:
            row = json.loads(line.decode("utf-8"))
        except ValueError:  # UnicodeDecodeError and JSONDecodeError
            continue
        step = row.get("step") if isinstance(row, dict) else None
        if isinstance(step, (int, float)) and not isinstance(step, bool):
            rows.append(row)
    return rows


class MetricsLogger:
    """Append `{"step": s, "time": t, **metrics}` lines with slash-namespaced keys (`train/loss`).

    With `resume_step`, lines logged after that step (work lost with the interrupted run) are dropped first,
    so a resumed run continues without duplicate or missing steps.
    """

    def __init__(self, run_dir: str | Path, resume_step: int | None = None, tensorboard: bool = True):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None:
            kept = [r for r in read_metrics(self.path) if r.get("step", -1) <= resume_step]
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        elif self.path.exists():
            self.path.unlink()
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"), purge_step=resume_step)

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        """Write one line for `step` and the numeric values to TensorBoard."""
        row = {"step": int(step), "time": time.time()}
        for k, v in metrics.items():
            row[k] = _plain(v)
        append_text(self.path, json.dumps(row) + "\n")
        if self._tb is not None:
            for k, v in row.items():
                if k not in ("step", "time") and isinstance(v, (int, float)) and math.isfinite(v):
                    self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        """Flush and close TensorBoard."""
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()
            self._tb = None


def _plain(v: Any) -> Any:
    if hasattr(v, "item") and getattr(v, "ndim", 0) == 0:
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no NaN; keep it visible as text
    return v

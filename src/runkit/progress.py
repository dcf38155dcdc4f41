"""A rich progress bar that shows the latest metrics beside the bar."""

from __future__ import annotations

import sys
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def _fmt(metrics: dict[str, Any]) -> str:
    parts = []
    for k, v in metrics.items():
        parts.append(f"{k.split('/')[-1]}={v:.4g}" if isinstance(v, float) else f"{k.split('/')[-1]}={v}")
    return " ".join(parts)


class ProgressBar:
    """`with ProgressBar(total, "train") as bar: bar.update(1, {"train/loss": 0.3})`.

    Off a terminal (CI, pipes) it prints one plain line every `every` updates instead of redrawing.
    """

    def __init__(
        self,
        total: int,
        description: str = "",
        completed: int = 0,
        enabled: bool | None = None,
        every: int = 10,
    ):
        self.total, self.description, self.completed, self.every = total, description, completed, every
        self.live = sys.stderr.isatty() if enabled is None else enabled
        self._progress: Progress | None = None

    def __enter__(self) -> ProgressBar:
        if self.live:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[metrics]}"),
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(
                self.description, total=self.total, completed=self.completed, metrics=""
            )
        return self

    def update(self, advance: int = 1, metrics: dict[str, Any] | None = None) -> None:
        """Advance the bar and show `metrics`."""
        self.completed += advance
        text = _fmt(metrics or {})
        if self._progress is not None:
            self._progress.update(self._task, advance=advance, metrics=text)
        elif self.completed % self.every == 0 or self.completed == self.total:
            print(f"{self.description} {self.completed}/{self.total} {text}", file=sys.stderr, flush=True)

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()

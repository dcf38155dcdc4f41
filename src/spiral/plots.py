"""Plots of a training run from its metrics.jsonl: invalid rates, win rates, response length, loss, grad norm."""

from __future__ import annotations

import math
from pathlib import Path

from runkit.errors import UserError
from runkit.metrics import read_metrics

# (file stem, title, y label, predicate on a metric key)
PANELS = [
    ("invalid_rate", "Invalid moves (policy turns)", "rate",
     lambda k: k.startswith("rollout/invalid_rate") or (k.startswith("eval/") and k.endswith("/invalid_rate"))),
    ("win_rates", "Evaluation win rate (both seats)", "win rate",
     lambda k: k.startswith("eval/") and k.endswith("/win_rate") and "seat" not in k.rsplit("/", 1)[-1]),
    ("response_length", "Response length", "tokens / characters",
     lambda k: k in ("rollout/response_tokens", "rollout/response_chars")),
    ("loss", "Training loss", "loss", lambda k: k in ("train/loss", "train/pg_loss", "train/kl")),
    ("grad_norm", "Gradient norm (before clipping)", "norm", lambda k: k == "train/grad_norm"),
    ("returns", "Returns and RAE baselines", "value",
     lambda k: k == "rollout/return_mean" or k.startswith("rae/") or k.endswith("/p0_win_rate")),
]  # fmt: skip


def series(rows: list[dict]) -> dict[str, tuple[list[int], list[float]]]:
    """metric -> (steps, values) for finite numbers."""
    out: dict[str, tuple[list[int], list[float]]] = {}
    for row in rows:
        for k, v in row.items():
            if (
                k in ("step", "time")
                or isinstance(v, bool)
                or not isinstance(v, (int, float))
                or not math.isfinite(v)
            ):
                continue
            xs, ys = out.setdefault(k, ([], []))
            xs.append(int(row["step"]))
            ys.append(float(v))
    return out


def plot_run(run_dir: str | Path) -> list[Path]:
    """Draw every panel that has data into RUN_DIR/plots/*.png; return the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = Path(run_dir)
    if not (run / "metrics.jsonl").is_file():
        raise UserError(f"{run} has no metrics.jsonl; pass a training run folder")
    data = series(read_metrics(run / "metrics.jsonl"))
    (run / "plots").mkdir(exist_ok=True)
    written = []
    for stem, title, ylabel, want in PANELS:
        keys = sorted(k for k in data if want(k))
        if not keys:
            continue
        fig, ax = plt.subplots(figsize=(7, 4))
        for k in keys:
            xs, ys = data[k]
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=k)
        ax.set(title=title, xlabel="step", ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        path = run / "plots" / f"{stem}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written

"""Plots of a training run from its metrics.jsonl: invalid rates, win rates, response length, loss, grad norm."""

from __future__ import annotations

import math
from pathlib import Path

from runkit.errors import UserError
from runkit.io import save_figure
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
    ("exploitability", "Kuhn exploitability, exact readout (uniform random 0.458, Nash 0)", "chips per game",
     lambda k: k in ("eval/exploitability", "eval/avg_exploitability")),
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
        save_figure(fig, path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def _moving_average(ys: list[float], k: int) -> list[float]:
    return [sum(ys[max(0, i - k + 1) : i + 1]) / len(ys[max(0, i - k + 1) : i + 1]) for i in range(len(ys))]


def plot_summary(run_dir: str | Path, out: str | Path, window: int = 5) -> Path:
    """One figure for a results page: the rollout invalid rate per self-play step (with a moving average), and
    each evaluated point (base, after warm-up, every eval.every steps) with Wilson 95 % intervals."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spiral.evaluation.stats import wilson_interval

    run = Path(run_dir)
    if not (run / "metrics.jsonl").is_file():
        raise UserError(f"{run} has no metrics.jsonl; pass a training run folder")
    rows = read_metrics(run / "metrics.jsonl")
    config = (
        json.loads((run / "config.json").read_text(encoding="utf-8"))
        if (run / "config.json").is_file()
        else {}
    )
    n = 2 * int(config.get("eval", {}).get("games", 0))
    data = series(rows)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    for key, label in (("rollout/invalid_rate", "invalid rate"), ("rollout/return_mean", "mean return")):
        if key in data:
            xs, ys = data[key]
            left.plot(xs, ys, alpha=0.35, label=f"{label} (per step)")
            left.plot(xs, _moving_average(ys, window), label=f"{label} ({window}-step mean)")
    left.set(title="Self-play rollouts (policy turns of each step)", xlabel="self-play step")
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    points: dict[str, list[tuple[float, float]]] = {}  # metric label -> (x, rate)
    for row in rows:
        for k, v in row.items():
            parts = k.split("/")
            base = parts[0] == "base"
            parts = parts[1:] if base else parts
            if len(parts) != 4 or parts[0] != "eval" or parts[3] not in ("win_rate", "invalid_rate"):
                continue
            x = -1.0 if base else float(row["step"])  # the base point sits left of the warm-up point (step 0)
            points.setdefault(f"{parts[3].replace('_', ' ')} vs {parts[2]} ({parts[1]})", []).append((x, v))
    for label, pts in sorted(points.items()):
        pts.sort()
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        if n:
            cis = [wilson_interval(round(y * n), n) for y in ys]
            err = [[y - lo for y, (lo, _) in zip(ys, cis, strict=True)],
                   [hi - y for y, (_, hi) in zip(ys, cis, strict=True)]]  # fmt: skip
            right.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=label)
        else:
            right.plot(xs, ys, marker="o", label=label)
    title = "Evaluation (x = -1: base model, 0: after warm-up)"
    right.set(title=title + (f", {n} games per point, Wilson 95 %" if n else ""), xlabel="self-play step")
    right.title.set_fontsize(9)
    right.grid(alpha=0.3)
    right.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, out, dpi=90)
    plt.close(fig)
    return out

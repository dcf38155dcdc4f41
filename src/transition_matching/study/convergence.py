"""The page parts of the paper-regime study: the cost regime, quality against training steps (with the flatness
verdict), and the equal-compute training table."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from transition_matching.study.aggregate import mean_std, median
from transition_matching.study.quality import FLAT, curve_label, flatness


def regime_line(cal: dict) -> str:
    """The measured cost of a backbone pass against a head step, per token."""
    p = cal["pass"]
    timed = f", {p['time_ratio']:.1f}x by CPU time" if p.get("time_ratio") else ""
    return (f"a backbone pass costs {p['flop_ratio']:.1f}x a head step per token by FLOPs{timed} "
            f"(parameters {p['param_ratio']:.1f}x; the paper's 7x speed-up needs about 25x).")  # fmt: skip


def mean_curve(curves: dict, method: str, metric: str) -> tuple[list[int], list[float], list[float], int]:
    """Steps, mean and std over seeds of one method's curve of a metric (at the steps all seeds share), seeds."""
    per_seed = [
        {p["step"]: p[metric] for p in c["points"]} for key, c in curves.items() if key.endswith("/" + method)
    ]
    if not per_seed:
        return [], [], [], 0
    common = sorted(set.intersection(*(set(p) for p in per_seed)))
    stats = [mean_std([p[k] for p in per_seed]) for k in common]
    return common, [m for m, _ in stats], [s for _, s in stats], len(per_seed)


def section(curves: dict, data: str, png: Path) -> str:
    """Markdown of the convergence part of one data set (and its plot: one panel per metric); empty without
    curves. The verdict per method and metric: the last quarter of training changed the seed mean by < FLAT."""
    if not curves:
        return ""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = next(iter(curves.values()))["spec"]
    metrics = first["metrics"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 3.8), squeeze=False)
    lines = []
    for ax, metric in zip(axes[0], metrics, strict=True):
        for method in ("fm", "dtm"):
            steps, mean, std, k = mean_curve(curves, method, metric)
            if not steps:
                continue
            spec = next(c["spec"] for key, c in curves.items() if key.endswith("/" + method))
            name = curve_label(spec, method)
            ax.errorbar(
                steps, mean, yerr=std, fmt="o-", capsize=2, ms=4, label=f"{name} ({k} seed{'s' * (k > 1)})"
            )
            change = flatness(list(zip(steps, mean, strict=True)))
            if change is not None:
                verdict = "flat" if abs(change) < FLAT else "still changing"
                lines.append(f"- {name}, {metric}: {mean[-1]:.3f} ± {std[-1]:.3f} after {steps[-1]} steps; the last "
                             f"quarter of training changed it by {100 * change:+.1f} %: {verdict}.")  # fmt: skip
        ax.set_xlabel("training steps")
        ax.set_ylabel(metric)
        ax.set_title(f"{data}: {metric} while training")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)
    head = (f"Convergence: the EMA weights evaluated {len(next(iter(curves.values()))['points'])} times "
            f"while training, {first['n']} samples each (fewer than the table's), the same sampler throughout; "
            f"a change of less than {100 * FLAT:.0f} % over the last quarter counts as flat.")  # fmt: skip
    return "\n\n".join([head, "\n".join(lines), f"![{data} curves]({png.name})"])


def compute_table(rows: list[dict], cal: dict) -> str:
    """Per model: training steps, calibrated seconds per step, compute (their product) and measured seconds."""
    per: dict[str, dict] = defaultdict(dict)
    for r in rows:
        per[r["model"]][r["seed"]] = (r["train_steps"], r["train_seconds"])
    sec = cal["step_seconds"]
    lines = ["| model | steps | s / step (calibrated) | compute: steps x s / step | training s (median over seeds) |",
             "|---|---|---|---|---|"]  # fmt: skip
    for m, d in sorted(per.items()):
        steps = median([v[0] for v in d.values()])
        s = sec.get(m)
        comp = f"{steps * s:.0f} s" if s else "-"
        lines.append(
            f"| {m} | {steps:.0f} | {f'{s:.3f}' if s else '-'} | {comp} | {median([v[1] for v in d.values()]):.0f} |"
        )
    return "\n".join(lines)

"""Exploitability (with its interval over the sampled thoughts) and the thought diagnostics against training
minutes, for one or more think-mode runs, as one PNG and a Markdown table. For a free-form run (no thoughts:
the move is parsed from the sampled answer) the columns are the readout's legal mass and the rollout's invalid
rate (mean over the steps since the previous readout) instead.

    python benchmarks/think_curves.py runs/think-s0 [runs/think-s1 ...] --out docs/results/spiral_kuhn_think.png
    python benchmarks/think_curves.py runs/free-chips-s0 --out docs/results/spiral_kuhn_freeform_chips.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DIAGNOSTICS = ("length", "empty_share", "distinct_share", "card_accuracy", "tv")
FREE = ("legal_mass", "invalid_rate", "answer_tokens")


def readouts(run: Path) -> list[dict]:
    """Per readout: step, training minutes, exploitability, interval, diagnostics (metrics.jsonl rows)."""
    rows = [
        json.loads(x) for x in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()
    ]
    minutes = {r["step"]: r.get("time/train_minutes", 0.0) for r in rows}
    invalid = {r["step"]: r["rollout/invalid_rate"] for r in rows if "rollout/invalid_rate" in r}
    tokens = {r["step"]: r["rollout/response_tokens"] for r in rows if "rollout/response_tokens" in r}
    out, last = [], 0
    for r in rows:
        if "eval/exploitability" not in r:
            continue
        row = {"step": r["step"], "minutes": minutes.get(r["step"], 0.0), "exploitability": r["eval/exploitability"],
               "lo": r.get("eval/exploitability_lo"), "hi": r.get("eval/exploitability_hi")}  # fmt: skip
        row.update({k: r.get(f"think/{k}") for k in DIAGNOSTICS})
        row["legal_mass"] = r.get("eval/legal_mass")
        for key, series in (
            ("invalid_rate", invalid),
            ("answer_tokens", tokens),
        ):  # mean since the last readout
            since = [v for s, v in series.items() if last < s <= r["step"]]
            row[key] = sum(since) / len(since) if since else None
        last = r["step"]
        out.append(row)
    return out


def columns(rows: list[dict]) -> tuple[str, ...]:
    """The thought diagnostics for a think run, the legal mass and invalid rate for a free-form run."""
    return DIAGNOSTICS if any(r["length"] is not None for r in rows) else FREE


def table(name: str, rows: list[dict]) -> str:
    """A Markdown table of one run's readouts."""
    cols = columns(rows)
    head = "| step | minutes | exploitability [95 % CI] | " + " | ".join(cols) + " |"
    lines = [f"### {name}", "", head, "|" + "---|" * (3 + len(cols))]
    for r in rows:
        ci = f" [{r['lo']:.3f}, {r['hi']:.3f}]" if r["lo"] is not None else ""
        diag = " | ".join("" if r[k] is None else f"{r[k]:.3f}" for k in cols)
        lines.append(f"| {r['step']} | {r['minutes']:.1f} | {r['exploitability']:.3f}{ci} | {diag} |")
    return "\n".join(lines)


def plot(runs: dict[str, list[dict]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for name, rows in runs.items():
        x = [r["minutes"] for r in rows]
        line = axes[0].plot(x, [r["exploitability"] for r in rows], marker="o", label=name)[0]
        if all(r["lo"] is not None for r in rows):
            axes[0].fill_between(
                x, [r["lo"] for r in rows], [r["hi"] for r in rows], alpha=0.2, color=line.get_color()
            )
        if columns(rows) == FREE:
            axes[1].plot(
                x, [r["legal_mass"] for r in rows], marker="o", label=f"{name} legal answers (readout)"
            )
            axes[1].plot(
                x, [r["invalid_rate"] for r in rows], linestyle="--", label=f"{name} invalid (self-play)"
            )
            axes[2].plot(x, [r["answer_tokens"] for r in rows], marker="o", label=f"{name} answer tokens")
            continue
        axes[1].plot(x, [r["card_accuracy"] for r in rows], marker="o", label=f"{name} card accuracy")
        axes[1].plot(x, [r["tv"] for r in rows], linestyle="--", label=f"{name} TV(move | thought)")
        axes[2].plot(x, [r["length"] for r in rows], marker="o", label=f"{name} tokens")
    axes[0].axhline(0.458, color="grey", linewidth=0.8, linestyle=":", label="uniform random")
    axes[0].set(
        xlabel="training minutes", ylabel="exploitability", title="Kuhn exploitability (sampled thoughts)"
    )
    axes[1].axhline(1 / 3, color="grey", linewidth=0.8, linestyle=":", label="chance")
    axes[1].set(
        xlabel="training minutes", title="think: card from thought, thought's effect; free: legal answers"
    )
    axes[2].set(xlabel="training minutes", ylabel="tokens", title="mean thought (or answer) length")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=90)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--out", default="", help="PNG path (nothing drawn without it)")
    args = p.parse_args(argv)
    runs = {Path(r).name: readouts(Path(r)) for r in args.runs}
    for name, rows in runs.items():
        print(table(name, rows) + "\n")
    if args.out:
        plot(runs, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

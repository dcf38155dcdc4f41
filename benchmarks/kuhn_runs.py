"""Kuhn self-play runs side by side: exploitability (exact readout) against training minutes, as a table and a plot.

Usage: python benchmarks/kuhn_runs.py RUN [RUN ...] [--every 10] [--plot PNG] [--labels A,B]

Reads each run's eval/exploitability.jsonl (the readouts `eval.exploitability_every` logs) and metrics.jsonl
(`time/step_seconds`, summed: training time, evaluation excluded). Prints per run a Markdown table: step,
training minutes, exploitability, the average policy's, the Queen's P(call facing a bet) and P(bet as opener),
and King minus Jack for both; then the first readout at or below 0.15 and the last readout; then the
12-information-set policy (P(bet or call)) at step 0, the best and the last readout, beside Nash at alpha 0 and 1/3.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

GOAL = 0.15
UNIFORM = 0.458


def readouts(run: Path) -> list[dict]:
    path = run / "eval" / "exploitability.jsonl"
    if not path.is_file():
        sys.exit(f"error: {path} not found (train with eval.exploitability_every > 0)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def training_minutes(run: Path) -> dict[int, float]:
    """Step -> cumulative self-play seconds / 60 up to and including it (step 0: 0)."""
    out, total = {0: 0.0}, 0.0
    for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if isinstance(row.get("time/step_seconds"), (int, float)):
            total += row["time/step_seconds"]
            out[int(row["step"])] = total / 60
    return out


def row_of(r: dict, minutes: dict[int, float]) -> str:
    p = r["probs"]
    return (
        f"| {r['step']} | {minutes.get(r['step'], float('nan')):.1f} | {r['exploitability']:.3f} | "
        f"{r['avg_exploitability']:.3f} | {p['Qb']:.2f} | {p['Q']:.2f} | {p['Kb'] - p['Jb']:+.2f} | "
        f"{p['K'] - p['J']:+.2f} |"
    )


def table(rows: list[dict], minutes: dict[int, float], every: int) -> str:
    first = next((r for r in rows if r["exploitability"] <= GOAL), None)
    shown = [r for r in rows if r["step"] % every == 0 or r is first or r is rows[-1]]
    lines = [
        "| step | training minutes | exploitability | average policy | P(call facing bet) | P(bet, opener) | "
        "call K - J | bet K - J |",
        "|---|---|---|---|---|---|---|---|",
        *(row_of(r, minutes) for r in shown),
        "",
    ]
    if first is not None:
        lines.append(
            f"First readout <= {GOAL}: step {first['step']}, {minutes.get(first['step'], float('nan')):.1f} "
            f"training minutes, {first['exploitability']:.3f}."
        )
    else:
        lines.append(f"No readout <= {GOAL}; lowest {min(r['exploitability'] for r in rows):.3f}.")
    last = rows[-1]
    lines.append(
        f"Last readout: step {last['step']}, {minutes.get(last['step'], float('nan')):.1f} minutes, "
        f"{last['exploitability']:.3f} (average policy {last['avg_exploitability']:.3f})."
    )
    return "\n".join(lines)


KEYS = ("J", "Jpb", "Jp", "Jb", "Q", "Qpb", "Qp", "Qb", "K", "Kpb", "Kp", "Kb")


def policy_table(rows: list[dict]) -> str:
    """P(bet or call) at the 12 information sets: Nash (alpha 0, 1/3), step 0, the best and the last readout."""
    from spiral.agents.kuhn import nash_policy

    def line(name: str, step, expl: float, probs: dict) -> str:
        return f"| {name} | {step} | {expl:.3f} | " + " | ".join(f"{probs[k]:.2f}" for k in KEYS) + " |"

    best = min(rows, key=lambda r: r["exploitability"])
    return "\n".join([
        "| policy | step | exploitability | " + " | ".join(KEYS) + " |",
        "|---|---|---|" + "---|" * len(KEYS),
        line("Nash alpha 0", "", 0.0, nash_policy(0.0)),
        line("Nash alpha 1/3", "", 0.0, nash_policy(1 / 3)),
        *(line(name, r["step"], r["exploitability"], r["probs"])
          for name, r in (("start", rows[0]), ("best", best), ("last", rows[-1]))),
    ])  # fmt: skip


def plot(data: list[tuple[list[dict], dict[int, float]]], labels: list[str], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for (rows, minutes), label in zip(data, labels, strict=True):
        xs = [minutes.get(r["step"], float("nan")) for r in rows]
        (line,) = ax.plot(xs, [r["exploitability"] for r in rows], marker=".", label=f"{label}: last iterate")
        ax.plot(xs, [r["avg_exploitability"] for r in rows], ls="--", color=line.get_color(),
                label=f"{label}: average policy")  # fmt: skip
    ax.axhline(UNIFORM, color="grey", lw=0.8, ls=":", label="uniform random (0.458)")
    ax.axhline(GOAL, color="black", lw=0.8, ls="-.", label=f"goal ({GOAL})")
    ax.set(xlabel="training minutes (evaluation excluded)", ylabel="exploitability (chips per game)",
           title="SmolLM2-135M Kuhn self-play: exploitability from the exact readout")  # fmt: skip
    ax.set_ylim(0, 0.8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--every", type=int, default=10, help="show readouts at steps that are multiples of this")
    ap.add_argument("--labels", help="comma-separated names for the runs (default: folder names)")
    ap.add_argument("--plot", type=Path, help="write the exploitability-against-minutes figure here")
    args = ap.parse_args()
    labels = args.labels.split(",") if args.labels else [r.name for r in args.runs]
    if len(labels) != len(args.runs):
        sys.exit("error: --labels needs one name per run")
    data = [(readouts(run), training_minutes(run)) for run in args.runs]  # each run's files read once
    for run, label, (rows, minutes) in zip(args.runs, labels, data, strict=True):
        print(f"### {label} ({run})\n\n{table(rows, minutes, args.every)}\n\n{policy_table(rows)}\n")
    if args.plot:
        plot(data, labels, args.plot)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()

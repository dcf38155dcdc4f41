"""Loss, draw and win rates of a run's first and last game evaluations, with Wilson intervals and the Newcombe
interval of each difference (two independent samples of games).

Usage: python benchmarks/game_rates_before_after.py RUN_DIR
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from spiral.evaluation.stats import wilson_interval


def rates(path: Path) -> dict[str, dict]:
    """Per opponent: games, loss / draw / win rates, mean reward and its interval, per-seat draw and loss."""
    results = json.loads(path.read_text(encoding="utf-8"))["results"]
    out = {}
    for name, v in results.items():
        a = v["all"]
        seats = [v.get(f"seat{i}", {}) for i in (0, 1)]
        out[name] = {"n": a["games"], "loss": a["loss_rate"], "draw": a["draw_rate"], "win": a["win_rate"],
                     "reward": a["mean_reward"], "reward_ci": a.get("mean_reward_ci"),
                     "draw_seats": [s.get("draw_rate") for s in seats],
                     "loss_seats": [s.get("loss_rate") for s in seats]}  # fmt: skip
    return out


def newcombe(p1: float, n1: int, p2: float, n2: int) -> tuple[float, float, float]:
    """p2 - p1 and its 95 % interval (Newcombe's hybrid score method)."""
    l1, u1 = wilson_interval(p1 * n1, n1)
    l2, u2 = wilson_interval(p2 * n2, n2)
    d = p2 - p1
    return d, d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2), d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)


def main() -> int:
    run = Path(sys.argv[1])
    evals = sorted(run.glob("eval/*/summary.json"))
    if len(evals) < 2:
        print(f"{run} has fewer than two game evaluations", file=sys.stderr)
        return 2
    first, last = rates(evals[0]), rates(evals[-1])
    print(f"before: {evals[0]}  after: {evals[-1]}")
    for name, a in first.items():
        b = last[name]
        for m in ("loss", "draw", "win"):
            lo, hi = wilson_interval(a[m] * a["n"], a["n"])
            lo2, hi2 = wilson_interval(b[m] * b["n"], b["n"])
            d, dl, dh = newcombe(a[m], a["n"], b[m], b["n"])
            print(f"{name} {m}: {a[m]:.3f} [{lo:.3f}, {hi:.3f}] -> {b[m]:.3f} [{lo2:.3f}, {hi2:.3f}]  "
                  f"difference {d:+.3f} [{dl:+.3f}, {dh:+.3f}]")  # fmt: skip
        print(f"{name} mean reward {a['reward']:+.3f} {a['reward_ci']} -> {b['reward']:+.3f} {b['reward_ci']}; "
              f"draw by seat {a['draw_seats']} -> {b['draw_seats']}; loss by seat {a['loss_seats']} -> "
              f"{b['loss_seats']}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

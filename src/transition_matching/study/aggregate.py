"""Aggregation of the study's rows over seeds, the headline numbers, and the fitted cost of one pass."""

from __future__ import annotations

import math
from collections import defaultdict

from transition_matching.study.plan import HIGHER_IS_BETTER


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    m = sum(values) / len(values)
    if len(values) < 2:
        return m, 0.0
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def median(values: list[float]) -> float:
    v = sorted(values)
    k = len(v) // 2
    return v[k] if len(v) % 2 else (v[k - 1] + v[k]) / 2


def aggregate(rows: list[dict], metrics: tuple[str, ...]) -> list[dict]:
    """One row per (model, steps, head steps): metrics as mean/std over seeds, median seconds per 1,000."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["model"], r["steps"], r["head_steps"])].append(r)
    out = []
    for (model, steps, S), rs in groups.items():
        a = {"model": model, "method": rs[0]["method"], "steps": steps, "head_steps": S, "seeds": len(rs),
             "backbone_evals": rs[0]["backbone_evals"], "head_evals": rs[0]["head_evals"],
             "seconds_per_1000": median([r["seconds_per_1000"] for r in rs]),
             "train_seconds": median([r["train_seconds"] for r in rs]),
             "train_steps": median([r["train_steps"] for r in rs])}  # fmt: skip
        for k in metrics:
            a[k], a[k + "_std"] = mean_std([r[k] for r in rs])
        out.append(a)
    order = {"fm": 0, "fm-eqtime": 1, "dtm": 2}
    out.sort(key=lambda a: (order.get(a["model"], 3), a["model"], a["steps"], a["head_steps"]))
    return out


TOL = 0.02  # "reaches a quality": within 2 % of its mean (W2/energy/cFID from 1,000 samples vary that much)


def reaches(a: float, ref: float, metric: str) -> bool:
    """a is as good as ref up to the relative tolerance TOL."""
    return a >= ref * (1 - TOL) if metric in HIGHER_IS_BETTER else a <= ref * (1 + TOL)


def within_spread(a: dict, ref: dict, metric: str) -> bool:
    """a is no worse than ref by more than the seed spread of their difference, sqrt(std_a^2 + std_ref^2)
    (seed standard deviations; both need >= 2 seeds, else the check cannot pass)."""
    if a["seeds"] < 2 or ref["seeds"] < 2:
        return False
    spread = math.hypot(a[metric + "_std"], ref[metric + "_std"])
    worse = ref[metric] - a[metric] if metric in HIGHER_IS_BETTER else a[metric] - ref[metric]
    return worse <= spread


def spread_check(agg: list[dict], metric: str, fm_steps: int) -> dict | None:
    """The fastest DTM configuration within the seed spread of FM at `fm_steps` (None when FM at that step
    count is missing), with its measured speed-up over that FM configuration."""
    ref = next((a for a in agg if a["model"] == "fm" and a["steps"] == fm_steps), None)
    if ref is None:
        return None
    ok = [a for a in agg if a["model"] == "dtm" and within_spread(a, ref, metric)]
    f = min(ok, key=lambda a: a["seconds_per_1000"]) if ok else None
    return {"ref": ref, "dtm": f, "speedup": ref["seconds_per_1000"] / f["seconds_per_1000"] if f else None}


def key_numbers(agg: list[dict], metric: str) -> dict:
    """FM-256 against DTM (best, 16x4, fastest at FM-256 quality) and FM's own fastest config at that quality."""
    pick = {(a["model"], a["steps"], a["head_steps"]): a for a in agg}
    fm = [a for a in agg if a["model"] == "fm"]
    ref = pick.get(("fm", 256, 0)) or max(fm, key=lambda a: a["steps"])
    dtm = [a for a in agg if a["model"] == "dtm"]
    best = min(dtm, key=lambda a: -a[metric] if metric in HIGHER_IS_BETTER else a[metric])

    def fastest(rows: list[dict]) -> dict | None:
        ok = [a for a in rows if reaches(a[metric], ref[metric], metric)]
        return min(ok, key=lambda a: a["seconds_per_1000"]) if ok else None

    out = {"fm_ref": ref, "fm_128": pick.get(("fm", 128, 0)), "dtm_best": best, "dtm_16x4": pick.get(("dtm", 16, 4)),
           "dtm_fastest_at_ref": fastest(dtm), "fm_fastest_at_ref": fastest(fm)}  # fmt: skip
    f = out["dtm_fastest_at_ref"]
    out["speedup"] = ref["seconds_per_1000"] / f["seconds_per_1000"] if f else None
    out["spread"] = {k: spread_check(agg, metric, k) for k in (128, 256)}
    return out


def cost_fit(agg: list[dict]) -> tuple[float, float]:
    """Least-squares seconds per 1,000 samples of one backbone pass and one head pass, from FM and DTM rows."""
    pts = [
        (a["backbone_evals"], a["head_evals"], a["seconds_per_1000"])
        for a in agg
        if a["method"] in ("fm", "dtm")
    ]
    sxx = sum(b * b for b, _, _ in pts)
    sxy = sum(b * h for b, h, _ in pts)
    syy = sum(h * h for _, h, _ in pts)
    sxt = sum(b * t for b, _, t in pts)
    syt = sum(h * t for _, h, t in pts)
    det = sxx * syy - sxy * sxy
    return (syy * sxt - sxy * syt) / det, (sxx * syt - sxy * sxt) / det

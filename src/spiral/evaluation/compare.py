"""`spiral eval compare A B`: paired per-item comparison of two reasoning results, with bootstrap intervals.

A and B are output folders of `spiral eval reasoning` (or their results.jsonl). Items are paired by id;
each item's score is its mean accuracy over samples; the difference B - A is averaged over the items
both runs finished, and its 95 % interval comes from resampling items (seeded).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from runkit.errors import UserError
from spiral.evaluation.stats import N_BOOT, paired_difference

# ---- loading results -----------------------------------------------------------------------------


def _results_path(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / "results.jsonl"
    if not p.is_file():
        raise UserError(f"{path}: no results.jsonl; pass an output folder of `spiral eval reasoning`")
    return p


def load_item_scores(path: str | Path) -> tuple[dict[str, float], dict[str, str], dict[str, Any]]:
    """Per-item mean accuracy, item -> task, and the run's config (samples: those recorded per item)."""
    from spiral.evaluation.reasoning import read_results

    p = _results_path(path)
    config: dict[str, Any] = {}
    if (p.parent / "config.json").is_file():
        config = json.loads((p.parent / "config.json").read_text(encoding="utf-8"))
    n = int(config.get("n", 0)) or None
    by_item: dict[str, list[float]] = {}
    tasks: dict[str, str] = {}
    for (item, _sample), row in read_results(p).items():
        by_item.setdefault(item, []).append(float(bool(row["correct"])))
        tasks[item] = row.get("task", item.split("/")[0])
    scores = {
        k: sum(v) / len(v) for k, v in by_item.items() if n is None or len(v) >= n
    }  # complete items only
    return scores, tasks, config


def result_folders(path: str | Path) -> dict[str, Path]:
    """Output folders under `path` keyed by their path relative to it ('.' for `path` itself)."""
    p = Path(path)
    if p.is_file() or (p / "results.jsonl").is_file():
        return {".": p}
    if not p.is_dir():
        raise UserError(f"{path} does not exist; pass an output folder of `spiral eval reasoning`")
    found = {str(r.parent.relative_to(p)): r.parent for r in sorted(p.rglob("results.jsonl"))}
    if not found:
        raise UserError(f"{path} holds no results.jsonl; pass an output folder of `spiral eval reasoning`")
    return found


def compare(path_a: str | Path, path_b: str | Path, seed: int = 0, n_boot: int = N_BOOT) -> dict[str, Any]:
    """Compare two result folders, or two folders of result folders paired by relative path (one per suite)."""
    fa, fb = result_folders(path_a), result_folders(path_b)
    if len(fa) == 1 and len(fb) == 1:
        pairs = {".": (next(iter(fa.values())), next(iter(fb.values())))}
    else:
        pairs = {k: (fa[k], fb[k]) for k in fa if k in fb}
        if not pairs:
            raise UserError(f"{path_a} and {path_b} hold no result folders with the same relative path")
    suites = {}
    for key, (a, b) in pairs.items():
        r = compare_one(a, b, seed, n_boot)
        name = key if key != "." else (r["a"]["suite"] or r["b"]["suite"] or "results")
        suites[name] = r
    return {"suites": suites, "unpaired": sorted(set(fa) ^ set(fb)) if len(pairs) > 1 else []}


def compare_one(
    path_a: str | Path, path_b: str | Path, seed: int = 0, n_boot: int = N_BOOT
) -> dict[str, Any]:
    """Paired comparison per task and overall (B - A), on the items both runs finished."""
    sa, tasks, cfg_a = load_item_scores(path_a)
    sb, _, cfg_b = load_item_scores(path_b)
    common = [k for k in sa if k in sb]
    if not common:
        raise UserError(
            f"{path_a} and {path_b} share no finished items; compare runs of the same suite and seed"
        )
    by_task: dict[str, list[str]] = {}
    for k in common:
        by_task.setdefault(tasks[k], []).append(k)
    out_tasks = {
        t: paired_difference([sa[k] for k in ks], [sb[k] for k in ks], n_boot, seed=seed)
        for t, ks in sorted(by_task.items())
    }
    overall = paired_difference([sa[k] for k in common], [sb[k] for k in common], n_boot, seed=seed)
    return {
        "a": {"path": str(path_a), "model": cfg_a.get("model"), "suite": cfg_a.get("suite")},
        "b": {"path": str(path_b), "model": cfg_b.get("model"), "suite": cfg_b.get("suite")},
        "only_a": len(sa) - len(common),
        "only_b": len(sb) - len(common),
        "tasks": out_tasks,
        "overall": overall,
    }


def format_comparison(result: dict[str, Any]) -> str:
    """Plain-text tables of a comparison, one per suite."""
    blocks = [f"== {name}\n{format_one(r)}" for name, r in result["suites"].items()]
    if result.get("unpaired"):
        blocks.append(f"folders without a partner: {', '.join(result['unpaired'])}")
    return "\n\n".join(blocks)


def format_one(result: dict[str, Any]) -> str:
    """A plain-text table of one suite's comparison."""
    a, b = result["a"], result["b"]
    lines = [
        f"A: {a['model']} ({a['path']})",
        f"B: {b['model']} ({b['path']})",
        f"{'task':<26} {'items':>5} {'A':>6} {'B':>6} {'B-A':>7}  {'95% CI':>17}  {'B>A':>4} {'A>B':>4}",
    ]
    for name, r in [*result["tasks"].items(), ("overall", result["overall"])]:
        lines.append(
            f"{name:<26} {r['items']:>5} {r['a']:>6.3f} {r['b']:>6.3f} {r['diff']:>+7.3f}  "
            f"[{r['ci'][0]:+.3f}, {r['ci'][1]:+.3f}]  {r['b_better']:>4} {r['a_better']:>4}"
        )
    if result["only_a"] or result["only_b"]:
        lines.append(f"unpaired items left out: {result['only_a']} only in A, {result['only_b']} only in B")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `spiral eval compare`."""
    parser.add_argument(
        "a",
        help="output folder (or results.jsonl) of `spiral eval reasoning`, or a folder of them: the baseline",
    )
    parser.add_argument(
        "b", help="the same for the model compared with it (folders pair up by relative path)"
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--n-boot", type=int, default=N_BOOT, help="bootstrap resamples")
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")


def run(args: argparse.Namespace) -> int:
    """Print the paired comparison."""
    result = compare(args.a, args.b, args.seed, args.n_boot)
    print(json.dumps(result, indent=2) if args.json else format_comparison(result))
    return 0

"""Transition Matching evidence: sample quality against backbone evaluations and sampling wall time.

    python benchmarks/tm_quality_vs_nfe.py            # default grid: 3 seeds, checkerboard, 8 gaussians, digits
    python benchmarks/tm_quality_vs_nfe.py --quick    # smoke-sized: 1 seed, short training, smaller grid
    python benchmarks/tm_quality_vs_nfe.py --data checkerboard --seeds 0 1   # a part; finished parts are reused

Every method trains the same transformer backbone for the same number of optimizer steps (training seconds are
recorded; an extra FM run, `fm-eqtime`, trains for as many steps as fit in DTM's training seconds at FM's
measured rate). One DTM model (continuous time)
serves the whole T x head-steps grid; FM serves every Euler step count; ARTM/FHTM train one model per T (T = 3
uses the paper's schedule 0, .5, .75, 1). Sampling of all configurations of one data set and seed runs in one
process, interleaved in a shuffled order, and the reported time is the fastest of the timed draws.
Writes docs/results/tm_quality_vs_nfe.{md,json} and docs/results/tm_quality_vs_nfe_<data>.png.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
T3 = "0,0.5,0.75,1"  # the paper's T = 3 schedule for ARTM/FHTM

TOY_TRAIN = {"backbone": "transformer", "width": 64, "depth": 2, "head_width": 96, "head_depth": 3,
             "batch_size": 256, "lr": 1e-3, "warmup": 100, "n_points": 20_000}  # fmt: skip
DIGIT_TRAIN = {"patch": 4, "width": 64, "depth": 3, "head_width": 96, "head_depth": 2,
               "batch_size": 128, "lr": 2e-3, "warmup": 100}  # fmt: skip
DATA = {  # training settings, guidance scale at sampling, the metrics reported (first = primary)
    "checkerboard": {"train": TOY_TRAIN, "cfg": 1.0, "metrics": ("w2", "energy")},
    "8gaussians": {"train": TOY_TRAIN, "cfg": 1.0, "metrics": ("w2", "energy")},
    "digits": {"train": DIGIT_TRAIN, "cfg": 2.0, "metrics": ("cfid", "class_acc")},
}
HIGHER_IS_BETTER = {"class_acc"}
MODES = {
    "full": {"seeds": (0, 1, 2), "steps": {"checkerboard": 500, "8gaussians": 500, "digits": 600},
             "n_eval": 1000, "fm_steps": (4, 8, 16, 32, 64, 128, 256),
             "dtm": [(T, S) for T in (1, 2, 4, 8, 16, 32) for S in (1, 4, 16)], "ar_T": (1, 2, 3),
             "ar_head_steps": (4, 16), "time_repeats": 1},
    "quick": {"seeds": (0,), "steps": {"checkerboard": 250, "8gaussians": 250, "digits": 250},
              "n_eval": 500, "fm_steps": (4, 16, 64, 256),
              "dtm": [(T, S) for T in (1, 4, 16, 32) for S in (1, 4, 16)], "ar_T": (2, 3),
              "ar_head_steps": (4,), "time_repeats": 1},
}  # fmt: skip


# ----------------------------------------------------------------------------------------- the plan


def models_for(mode: dict) -> list[dict]:
    """The models trained per data set and seed (name, method and method settings)."""
    out = [{"name": "fm", "method": "fm"}, {"name": "dtm", "method": "dtm"}]
    for m in ("artm", "fhtm"):
        for T in mode["ar_T"]:
            out.append({"name": f"{m}{T}", "method": m, **({"schedule": T3} if T == 3 else {"T": T})})
    return out


def sampling_grid(mode: dict, name: str, method: str, T: int) -> list[tuple[int, int]]:
    """(steps, head steps) evaluated for one model."""
    if method == "fm":
        return [(s, 1) for s in mode["fm_steps"]]
    if method == "dtm":
        return list(mode["dtm"])
    return [(T, S) for S in mode["ar_head_steps"]]


def run_path(root: Path, data: str, seed: int, name: str) -> Path:
    return root / data / f"seed{seed}" / name


# ----------------------------------------------------------------------------------------- workers


def train_one(root: str, data: str, seed: int, spec: dict, steps: int) -> dict:
    """Train one model for `steps` optimizer steps (1 thread); a finished run is reused."""
    import torch

    torch.set_num_threads(1)
    from runkit.io import atomic_write_json, read_json
    from runkit.rundir import create_run_dir
    from transition_matching.config import make_config, resolve
    from transition_matching.trainer import config_dict, load_training_data, train

    path = run_path(Path(root), data, seed, spec["name"])
    done = path / "bench_train.json"
    if done.is_file():
        return read_json(done)
    settings = {k: v for k, v in spec.items() if k != "name"}
    cfg = make_config(data=data, seed=seed, steps=steps, ckpt_every=steps, log_every=50, **DATA[data]["train"],
                      **settings)  # fmt: skip
    ds = load_training_data(cfg)
    cfg = resolve(cfg, ds.n_tokens)
    if path.exists():  # an unfinished earlier attempt
        import shutil

        shutil.rmtree(path)
    res = train(cfg, create_run_dir(path, config_dict(cfg), kind="tm"), data=ds, progress=False)
    out = {"data": data, "seed": seed, "name": spec["name"], "method": spec["method"], "steps": res.step,
           "seconds": res.seconds}  # fmt: skip
    atomic_write_json(done, out)
    return out


def equal_time_steps(steps: int, fm_seconds: float, dtm_seconds: float) -> int:
    """FM steps that take as long as DTM's training at FM's measured rate (rounded to 10)."""
    return max(10, int(round(steps * dtm_seconds / fm_seconds / 10)) * 10)


def eval_one(root: str, data: str, seed: int, mode_name: str, names: list[str]) -> list[dict]:
    """Evaluate every (model, steps, head steps) of one data set and seed, interleaved, in this process."""
    import torch

    torch.set_num_threads(1)
    from runkit.io import atomic_write_json, read_json
    from transition_matching.evaluation import evaluate
    from transition_matching.model import method_config
    from transition_matching.runs import default_labels, draw_samples, load_run, sample_options

    mode = MODES[mode_name]
    cache = Path(root) / data / f"seed{seed}" / "bench_eval.json"
    if cache.is_file():
        return read_json(cache)
    loaded = {n: load_run(run_path(Path(root), data, seed, n)) for n in names}
    jobs = [
        (n, s, S)
        for n in names
        for s, S in sampling_grid(mode, n, loaded[n].config.method, method_config(loaded[n].config).T)
    ]
    rng = random.Random(seed)
    rng.shuffle(jobs)
    rows, cfg_w, n = {}, DATA[data]["cfg"], mode["n_eval"]
    for name, steps, S in jobs:  # quality (and one timing) per configuration
        lr = loaded[name]
        r = evaluate(lr, n, sample_options(lr, steps=steps, head_steps=S, cfg=cfg_w), seed=1000 + seed)
        train = read_json(run_path(Path(root), data, seed, name) / "bench_train.json")
        rows[(name, steps, S)] = {
            "data": data, "seed": seed, "model": name, "method": lr.config.method, "trained_T": method_config(lr.config).T,
            "steps": steps, "head_steps": S if lr.method.uses_head else 0, "backbone_evals": r["backbone_evals"],
            "head_evals": r["head_evals"], "train_steps": train["steps"], "train_seconds": train["seconds"],
            "times": [r["seconds_per_1000"]], **{k: r[k] for k in ("w2", "energy", "cfid", "class_acc") if k in r},
        }  # fmt: skip
    for _ in range(mode["time_repeats"]):  # extra timing rounds, again interleaved in a fresh order
        rng.shuffle(jobs)
        for name, steps, S in jobs:
            lr = loaded[name]
            labels = default_labels(lr, 1000)
            s = draw_samples(lr, 1000, sample_options(lr, steps=steps, head_steps=S, cfg=cfg_w), labels, seed)
            rows[(name, steps, S)]["times"].append(s.seconds)
    out = list(rows.values())
    for r in out:
        r["seconds_per_1000"] = min(r["times"])
    atomic_write_json(cache, out)
    return out


# ----------------------------------------------------------------------------------------- aggregation


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


def fmt(a: dict, k: str) -> str:
    return f"{a[k]:.3f} ± {a[k + '_std']:.3f}"


def label(a: dict) -> str:
    if a["method"] == "fm":
        return f"{a['model'].upper()} {a['steps']}"
    if a["method"] == "dtm":
        return f"DTM {a['steps']}x{a['head_steps']}"
    return f"{a['method'].upper()}-{a['steps']} x{a['head_steps']}"


def markdown_table(agg: list[dict], metrics: tuple[str, ...]) -> str:
    """The per-configuration table of one data set."""
    b, h = cost_fit(agg)
    head = "| config | seeds | backbone evals | head evals | " + " | ".join(metrics)
    head += " | s / 1000 samples (measured) | s / 1000 (cost model) |"
    lines = [head, "|" + "---|" * (6 + len(metrics))]
    for a in agg:
        ms = " | ".join(fmt(a, k) for k in metrics)
        lines.append(
            f"| {label(a)} | {a['seeds']} | {a['backbone_evals']} | {a['head_evals']} | {ms} | {a['seconds_per_1000']:.3f} | "
            f"{b * a['backbone_evals'] + h * a['head_evals']:.3f} |"
        )
    return "\n".join(lines)


def key_lines(key: dict, metric: str) -> list[str]:
    """The headline comparison of one data set as markdown bullets."""
    ref = key["fm_ref"]
    lines = []
    for title, a in (("FM reference", ref), ("DTM best", key["dtm_best"]), ("DTM 16x4", key["dtm_16x4"])):
        if a is None:
            continue
        ratio = ref["seconds_per_1000"] / a["seconds_per_1000"]
        lines.append(f"- {title}: {label(a)}: {metric} {fmt(a, metric)}, {a['backbone_evals']} backbone evals, "
                     f"{a['seconds_per_1000']:.3f} s / 1000 ({ratio:.1f}x faster than {label(ref)})")  # fmt: skip
    f, g = key["dtm_fastest_at_ref"], key["fm_fastest_at_ref"]
    within = f"within {100 * TOL:.0f} % of {label(ref)}'s mean {metric}"
    if f is None:
        lines.append(f"- No DTM configuration comes {within}: the >= 7x goal fails here.")
    else:
        verdict = "meets" if key["speedup"] >= 7 else "misses"
        lines.append(f"- Fastest DTM {within}: {label(f)}, {key['speedup']:.1f}x less wall time: {verdict} the "
                     f">= 7x goal as stated.")  # fmt: skip
    if g is not None:
        lines.append(f"- But FM itself comes {within} at {label(g)}, "
                     f"{ref['seconds_per_1000'] / g['seconds_per_1000']:.1f}x faster than {label(ref)}"
                     + (f"; the fastest such DTM takes {f['seconds_per_1000'] / g['seconds_per_1000']:.1f}x FM's "
                        "time." if f else "."))  # fmt: skip
    a, b = key.get("fm_128"), key["dtm_16x4"]
    if a is not None and b is not None:  # the paper's speed claim: DTM 16x4 vs FM 128, ~7x at equal quality
        lines.append(f"- Paper's speed pair: DTM 16x4 {metric} {fmt(b, metric)} vs FM 128 {fmt(a, metric)}; DTM 16x4 is "
                     f"{a['seconds_per_1000'] / b['seconds_per_1000']:.1f}x faster (paper: ~7x on an H100).")  # fmt: skip
    return lines


def plot(agg: list[dict], data: str, metrics: tuple[str, ...], path: Path) -> None:
    """Quality against backbone evaluations and against wall time, one row per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(metrics), 2, figsize=(12, 4.2 * len(metrics)), squeeze=False)
    series: dict[str, list[dict]] = defaultdict(list)
    for a in agg:
        key = a["model"] if a["method"] == "fm" else f"dtm S={a['head_steps']}" if a["method"] == "dtm" else (
            f"{a['method']} S={a['head_steps']}")  # fmt: skip
        series[key].append(a)
    for row, k in enumerate(metrics):
        for col, x in enumerate(("backbone_evals", "seconds_per_1000")):
            ax = axes[row][col]
            for name, pts in sorted(series.items()):
                pts = sorted(pts, key=lambda a: (a[x], a["steps"]))
                style = "o-" if name.startswith(("fm", "dtm")) else "s--"
                ax.errorbar([p[x] for p in pts], [p[k] for p in pts], yerr=[p[k + "_std"] for p in pts],
                            fmt=style, capsize=2, label=name, ms=4)  # fmt: skip
            ax.set_xscale("log")
            if k != "class_acc":
                ax.set_yscale("log")
            ax.set_xlabel(
                "backbone evaluations (NFE)" if x == "backbone_evals" else "seconds per 1,000 samples"
            )
            ax.set_ylabel(k)
            ax.set_title(f"{data}: {k} vs {'NFE' if col == 0 else 'wall time'}")
            ax.grid(alpha=0.3, which="both")
        axes[row][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def training_table(rows: list[dict]) -> str:
    """Median training seconds and steps per model over seeds."""
    per: dict[str, dict] = {}
    for r in rows:
        per.setdefault(r["model"], {})[r["seed"]] = (r["train_steps"], r["train_seconds"])
    lines = ["| model | steps | training s (median over seeds) |", "|---|---|---|"]
    for m, d in sorted(per.items()):
        lines.append(
            f"| {m} | {median([v[0] for v in d.values()]):.0f} | {median([v[1] for v in d.values()]):.0f} |"
        )
    return "\n".join(lines)


READING_START, READING_END = "<!-- reading -->", "<!-- /reading -->"


def write_markdown(path: Path, header: str, sections: list[str]) -> None:
    """Write the results page; a hand-written reading between the reading markers is kept."""
    reading = f"{READING_START}\n## Reading\n\n(to be written after looking at the numbers)\n{READING_END}"
    if path.is_file():
        old = path.read_text(encoding="utf-8")
        if READING_START in old and READING_END in old:
            reading = old[old.index(READING_START) : old.index(READING_END) + len(READING_END)]
    path.write_text(header + "\n\n" + reading + "\n\n" + "\n\n".join(sections) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1 seed, short training, smaller grid (~10 min)")
    parser.add_argument("--data", nargs="+", choices=list(DATA), default=list(DATA))
    parser.add_argument("--seeds", nargs="+", type=int, help="override the seeds of the mode")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes of one thread each [2]")
    parser.add_argument("--root", help="folder of the trained runs [runs/bench/tm_quality_vs_nfe[_quick]]")
    parser.add_argument("--out", default=str(RESULTS), help="folder for the .md, .json and .png results")
    parser.add_argument("--no-eqtime", action="store_true", help="skip the equal-wall-time FM run")
    parser.add_argument(
        "--ar-seeds", type=int, help="train ARTM/FHTM only for the first N seeds (saves time)"
    )
    parser.add_argument(
        "--report-only", action="store_true", help="only rewrite the page from finished parts"
    )
    args = parser.parse_args()
    mode_name = "quick" if args.quick else "full"
    mode = MODES[mode_name]
    seeds = tuple(args.seeds) if args.seeds else mode["seeds"]
    root = Path(args.root or ROOT / "runs" / "bench" / f"tm_quality_vs_nfe{'_quick' if args.quick else ''}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    if "digits" in args.data:  # train the cached classifier once, before parallel workers want it
        from transition_matching.classifier import get_classifier
        from transition_matching.config import make_config
        from transition_matching.trainer import load_training_data

        get_classifier(load_training_data(make_config(data="digits", **DIGIT_TRAIN)))
    parts = len(args.data) * len(seeds)
    rows: list[dict] = []
    if args.report_only:
        from runkit.io import read_json

        found = [root / d / f"seed{s}" / "bench_eval.json" for d in args.data for s in seeds]
        rows = [r for f in found if f.is_file() for r in read_json(f)]
        done = len({(r["data"], r["seed"]) for r in rows})
        old = out / f"tm_quality_vs_nfe{'_quick' if args.quick else ''}.json"
        prev = read_json(old) if old.is_file() else {}
        cmd = prev.get("command", "python benchmarks/tm_quality_vs_nfe.py " + " ".join(sys.argv[1:]))
        write_outputs(args, out, mode_name, seeds, rows, prev.get("seconds", 0.0), done, parts, cmd)
        return 0
    for res in run_plan(root, args.data, seeds, mode_name, args.jobs, not args.no_eqtime, args.ar_seeds):
        rows += res
        done = len({(r["data"], r["seed"]) for r in rows})
        write_outputs(args, out, mode_name, seeds, rows, time.time() - t0, done, parts)
    print(f"finished in {time.time() - t0:.0f} s", flush=True)
    return 0


def run_plan(
    root: Path, datasets: list[str], seeds: tuple[int, ...], mode_name: str, jobs: int, eqtime: bool,
    ar_seeds: int | None = None,
):  # fmt: skip
    """Train and evaluate on `jobs` workers; yields the rows of each (data, seed) as soon as they are evaluated.

    Seed-major order, and follow-up work (the equal-time FM run, the evaluation) goes before further training:
    results arrive early and a run stopped half-way still leaves complete (data, seed) parts for every data set.
    """
    import multiprocessing
    from collections import deque
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    mode = MODES[mode_name]
    ar_seeds = len(seeds) if ar_seeds is None else ar_seeds

    def specs_for(seed: int) -> list[dict]:  # ARTM/FHTM only for the first ar_seeds seeds
        return [
            sp for sp in models_for(mode) if sp["method"] in ("fm", "dtm") or seeds.index(seed) < ar_seeds
        ]

    def names_for(seed: int) -> list[str]:
        return [sp["name"] for sp in specs_for(seed)] + (["fm-eqtime"] if eqtime else [])

    cost = {"fhtm": 4, "artm": 3, "dtm": 2, "fm": 1}  # slowest first so that the workers finish together
    tasks = [(str(root), d, s, sp, mode["steps"][d]) for d in datasets for s in seeds for sp in specs_for(s)]
    tasks.sort(key=lambda t: (t[2], datasets.index(t[1]), -cost[t[3]["method"]]))  # seed-major
    todo, ready, in_flight = deque(tasks), deque(), {}
    trained: dict[tuple, dict] = defaultdict(dict)
    t0 = time.time()
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        while todo or ready or in_flight:
            while len(in_flight) < jobs and (ready or todo):
                kind, targs = ready.popleft() if ready else ("train", todo.popleft())
                in_flight[pool.submit(eval_one if kind == "eval" else train_one, *targs)] = (kind, targs)
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for fut in finished:
                kind, targs = in_flight.pop(fut)
                res = fut.result()
                if kind == "eval":
                    print(f"[{time.time() - t0:5.0f} s] evaluated {targs[1]} seed {targs[2]}", flush=True)
                    yield res
                    continue
                d, s = res["data"], res["seed"]
                trained[(d, s)][res["name"]] = res
                print(f"[{time.time() - t0:5.0f} s] trained {d} seed {s} {res['name']}: {res['steps']} steps "
                      f"in {res['seconds']:.0f} s", flush=True)  # fmt: skip
                if kind == "train" and len(trained[(d, s)]) == len(specs_for(s)) and eqtime:
                    tr = trained[(d, s)]
                    k = equal_time_steps(mode["steps"][d], tr["fm"]["seconds"], tr["dtm"]["seconds"])
                    ready.append(("eqtime", (str(root), d, s, {"name": "fm-eqtime", "method": "fm"}, k)))
                elif len(trained[(d, s)]) == len(names_for(s)):
                    ready.append(("eval", (str(root), d, s, mode_name, names_for(s))))


def write_outputs(
    args,
    out: Path,
    mode_name: str,
    seeds,
    rows: list[dict],
    total: float,
    done: int,
    parts: int,
    cmd: str = "",
):
    """The JSON of raw rows, the markdown page and the plots of everything evaluated so far."""
    mode = MODES[mode_name]
    suffix = "_quick" if args.quick else ""
    cmd = cmd or "python benchmarks/tm_quality_vs_nfe.py " + " ".join(sys.argv[1:])
    summary = {"command": cmd, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "mode": mode_name,
               "seeds": list(seeds), "seconds": total, "parts_done": done, "parts": parts, "rows": rows}  # fmt: skip
    (out / f"tm_quality_vs_nfe{suffix}.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    partial = "" if done == parts else f" PARTIAL: {done} of {parts} (data set, seed) parts finished."
    header = (f"# Transition Matching: quality vs backbone evaluations and wall time{' (quick)' if args.quick else ''}"
              f"\n\n`{cmd}` ({summary['date']}; {total / 60:.0f} min; 2 CPU cores shared with 2-3 other engineers' "
              f"jobs, {args.jobs} worker processes of 1 torch thread; wall times are noisy upper bounds). Seeds "
              f"{list(seeds)}; metrics are mean ± std over seeds, seconds the median over seeds of the fastest of "
              f"{1 + mode['time_repeats']} interleaved timed draws of 1,000 samples. Raw per-seed rows: "
              f"`tm_quality_vs_nfe{suffix}.json`.{partial}")  # fmt: skip
    sections = []
    for d in args.data:
        metrics = DATA[d]["metrics"]
        drows = [r for r in rows if r["data"] == d]
        if not drows:
            continue
        agg = aggregate(drows, metrics)
        png = f"tm_quality_vs_nfe{suffix}_{d}.png"
        plot(agg, d, metrics, out / png)
        key = key_numbers(agg, metrics[0])
        settings = {
            **DATA[d]["train"],
            "steps": mode["steps"][d],
            "guidance": DATA[d]["cfg"],
            "n_eval": mode["n_eval"],
        }
        seeds_d = sorted({r["seed"] for r in drows})
        b, h = cost_fit(agg)
        cost = (f"- Cost model (least squares over the FM and DTM rows): one backbone pass {1000 * b:.1f} ms and one "
                f"head pass {1000 * h:.1f} ms per 1,000 samples, head/backbone = {h / b:.2f}; so DTM 16x4 vs FM 128 "
                f"can be at most 128 / (16 + 64 x {h / b:.2f}) = {128 / (16 + 64 * h / b):.1f}x faster here. (The "
                f"paper's ~7x implies head/backbone ~0.04.)")  # fmt: skip
        sec = [f"## {d}", f"Seeds {seeds_d}. Settings: `{json.dumps(settings)}`.",
               "\n".join(key_lines(key, metrics[0]) + [cost]),
               markdown_table(agg, metrics), "Training (same steps for all; `fm-eqtime` = FM for as many steps as fit in DTM's training seconds):",
               training_table(drows), f"![{d}]({png})"]  # fmt: skip
        sections.append("\n\n".join(sec))
        print("\n".join(key_lines(key, metrics[0])), flush=True)
    write_markdown(out / f"tm_quality_vs_nfe{suffix}.md", header, sections)
    print(f"wrote {out / f'tm_quality_vs_nfe{suffix}.md'}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())

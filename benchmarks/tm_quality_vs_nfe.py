"""Transition Matching evidence: sample quality against backbone evaluations and sampling wall time.

    python benchmarks/tm_quality_vs_nfe.py            # default grid: 3 seeds, checkerboard, 8 gaussians, digits
    python benchmarks/tm_quality_vs_nfe.py --quick    # smoke-sized: 1 seed, short training, smaller grid
    python benchmarks/tm_quality_vs_nfe.py --data digits --seeds 1 2 --methods artm fhtm   # a part of the grid
    python benchmarks/tm_quality_vs_nfe.py --data mnist14 --seeds 0      # optional: MNIST-5k at 14x14
    python benchmarks/tm_quality_vs_nfe.py --report-only                 # rewrite the page from the JSON

Every method trains the same transformer backbone for the same number of optimizer steps (training seconds are
recorded; an extra FM run, `fm-eqtime`, trains for as many steps as fit in DTM's training seconds at FM's
measured rate). One DTM model (continuous time) serves the whole T x head-steps grid; FM serves every Euler step
count; ARTM/FHTM train one model per T (T = 3 uses the paper's schedule 0, .5, .75, 1).

Resumable: the unit of work is a cell (data set, seed, model). The raw rows of every finished cell are kept in
docs/results/tm_quality_vs_nfe[_quick].json and in the run folder (<root>/<data>/seed<s>/<model>/bench_eval.json);
a run skips every cell already present in either (with the same settings) and merges the new rows into the JSON,
so a stopped run continues where it stopped and a part of the grid can be added later. --fresh starts a new JSON
(trained runs are still reused). Sampling of the new cells of one data set and seed runs in one process,
interleaved in a shuffled order, and the reported time is the fastest of the timed draws.
Writes docs/results/tm_quality_vs_nfe[_quick].{md,json} and docs/results/tm_quality_vs_nfe[_quick]_<data>.png.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shlex
import sys
import time
from collections import defaultdict
from concurrent.futures import Future
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
T3 = "0,0.5,0.75,1"  # the paper's T = 3 schedule for ARTM/FHTM

TOY_TRAIN = {"backbone": "transformer", "width": 64, "depth": 2, "head_width": 96, "head_depth": 3,
             "batch_size": 256, "lr": 1e-3, "warmup": 100, "n_points": 20_000}  # fmt: skip
DIGIT_TRAIN = {"patch": 4, "width": 64, "depth": 3, "head_width": 96, "head_depth": 2,
               "batch_size": 128, "lr": 2e-3, "warmup": 100}  # fmt: skip
MNIST_TRAIN = {**DIGIT_TRAIN, "patch": 7}  # 14x14 MNIST in 4 tokens of 7x7 pixels
DATA = {  # training settings, guidance scale at sampling, the metrics reported (first = primary)
    "checkerboard": {"train": TOY_TRAIN, "cfg": 1.0, "metrics": ("w2", "energy")},
    "8gaussians": {"train": TOY_TRAIN, "cfg": 1.0, "metrics": ("w2", "energy")},
    "digits": {"train": DIGIT_TRAIN, "cfg": 2.0, "metrics": ("cfid", "class_acc")},
    "mnist14": {"train": MNIST_TRAIN, "cfg": 2.0, "metrics": ("cfid", "class_acc")},  # optional
}
DEFAULT_DATA = ("checkerboard", "8gaussians", "digits")
IMAGE_DATA = ("digits", "mnist14")
HIGHER_IS_BETTER = {"class_acc"}
MODES = {
    "full": {"seeds": (0, 1, 2), "steps": {"checkerboard": 500, "8gaussians": 500, "digits": 600, "mnist14": 600},
             "n_eval": 1000, "fm_steps": (4, 8, 16, 32, 64, 128, 256),
             "dtm": [(T, S) for T in (1, 2, 4, 8, 16, 32) for S in (1, 4, 16)], "ar_T": (1, 2, 3),
             "ar_head_steps": (4, 16), "time_repeats": 1},
    "quick": {"seeds": (0,), "steps": {"checkerboard": 200, "8gaussians": 200, "digits": 300, "mnist14": 300},
              "n_eval": 400, "fm_steps": (4, 16, 64, 256),
              "dtm": [(T, S) for T in (1, 4, 16) for S in (1, 4)], "ar_T": (1, 3),
              "ar_head_steps": (4,), "time_repeats": 0},
}  # fmt: skip
METHODS = ("fm", "fm-eqtime", "dtm", "artm", "fhtm")


# ----------------------------------------------------------------------------------------- the plan


def models_for(mode: dict) -> list[dict]:
    """The models trained per data set and seed (name, method and method settings); fm-eqtime not included."""
    out = [{"name": "fm", "method": "fm"}, {"name": "dtm", "method": "dtm"}]
    for m in ("artm", "fhtm"):
        for T in mode["ar_T"]:
            out.append({"name": f"{m}{T}", "method": m, **({"schedule": T3} if T == 3 else {"T": T})})
    return out


EQTIME = {"name": "fm-eqtime", "method": "fm"}


def method_of(name: str) -> str:
    """fm, fm-eqtime, dtm, artm or fhtm from a model name such as artm3."""
    return name if name in ("fm", "fm-eqtime", "dtm") else name.rstrip("0123456789")


def sampling_grid(mode: dict, name: str, method: str, T: int) -> list[tuple[int, int]]:
    """(steps, head steps) evaluated for one model."""
    if method == "fm":
        return [(s, 1) for s in mode["fm_steps"]]
    if method == "dtm":
        return list(mode["dtm"])
    return [(T, S) for S in mode["ar_head_steps"]]


def run_path(root: Path, data: str, seed: int, name: str) -> Path:
    return root / data / f"seed{seed}" / name


def canon(x):
    """A JSON round trip: tuples become lists, so that settings compare equal with what a JSON file holds."""
    return json.loads(json.dumps(x))


def cell_settings(mode: dict, data: str) -> dict:
    """Everything that decides the rows of a cell of this data set (compared before a stored cell is reused)."""
    keys = ("n_eval", "fm_steps", "dtm", "ar_head_steps", "time_repeats")
    return canon({"data": DATA[data], "steps": mode["steps"][data], **{k: mode[k] for k in keys}})


def data_settings(mode: dict, rows: list[dict]) -> dict:
    """cell_settings of every data set with rows (stored in the JSON)."""
    return {d: cell_settings(mode, d) for d in DATA if any(r["data"] == d for r in rows)}


def plan_cells(
    datasets, seeds, mode: dict, ar_seeds: int | None = None, methods=METHODS, eqtime: bool = True
) -> dict[tuple[str, int], list[dict]]:
    """The cells wanted: (data, seed) -> model specs; ARTM/FHTM only for the first `ar_seeds` seeds."""
    seeds = list(seeds)
    ar_seeds = len(seeds) if ar_seeds is None else ar_seeds
    out = {}
    for d in datasets:
        for s in seeds:
            specs = [sp for sp in models_for(mode) if sp["method"] in methods]
            specs = [sp for sp in specs if sp["method"] in ("fm", "dtm") or seeds.index(s) < ar_seeds]
            if eqtime and "fm-eqtime" in methods:
                specs.append(EQTIME)
            if specs:
                out[(d, s)] = specs
    return out


def cells_of(rows: list[dict]) -> dict[tuple[str, int, str], list[dict]]:
    """The rows of each (data, seed, model) cell."""
    out: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        out[(r["data"], r["seed"], r["model"])].append(r)
    return dict(out)


def merge_rows(old: list[dict], new: list[dict]) -> list[dict]:
    """old rows with the cells of `new` replaced or added (a cell's rows come from one invocation)."""
    replaced = set(cells_of(new))
    return [r for r in old if (r["data"], r["seed"], r["model"]) not in replaced] + list(new)


# ----------------------------------------------------------------------------------------- stored results


def json_path(out: Path, suffix: str) -> Path:
    return out / f"tm_quality_vs_nfe{suffix}.json"


def load_previous(path: Path, mode_name: str, fresh: bool = False) -> tuple[list[dict], list[dict]]:
    """Rows and invocation history of an earlier JSON of this mode with the same settings, else nothing."""
    if fresh or not path.is_file():
        return [], []
    prev = json.loads(path.read_text(encoding="utf-8"))
    if prev.get("mode") != mode_name:
        print(
            f"{path.name} holds mode {prev.get('mode')!r}, not {mode_name!r}: starting a new record",
            flush=True,
        )
        return [], []
    mode, stored = MODES[mode_name], prev.get("settings", {})

    def stale_row(r: dict) -> bool:  # a JSON of the first format has no settings: check its training steps
        d = r["data"]
        if d not in DATA:
            return True
        if d in stored:
            return stored[d] != cell_settings(mode, d)
        return r["model"] != "fm-eqtime" and r["train_steps"] != mode["steps"][d]

    stale = {r["data"] for r in prev["rows"] if stale_row(r)}  # data sets made with other settings
    if stale:
        print(f"{path.name}: the cells of {', '.join(sorted(stale))} were made with other settings; they are "
              "dropped and run again", flush=True)  # fmt: skip
    history = prev.get("runs")
    if history is None:  # the first format: one invocation, described by top-level fields
        history = [{k: prev[k] for k in ("command", "date", "seconds") if k in prev}]
        history[0]["note"] = "2 CPU cores shared with 2-3 other engineers' jobs, 2 worker processes"
        history[0]["cells"] = len(cells_of(prev["rows"]))
    rows = [{"timed_at": history[0].get("date", ""), **r} for r in prev["rows"] if r["data"] not in stale]
    return rows, history


def cell_cache(root: Path, data: str, seed: int, name: str) -> Path:
    return run_path(root, data, seed, name) / "bench_eval.json"


def read_cell_cache(root: Path, data: str, seed: int, name: str, settings: dict) -> list[dict] | None:
    """The rows a finished cell left in its run folder, if they were made with these settings."""
    path = cell_cache(root, data, seed, name)
    if not path.is_file():
        return None
    stored = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(stored, dict) or stored.get("settings") != settings:
        return None
    return stored["rows"]


# ----------------------------------------------------------------------------------------- workers


def train_one(root: str, data: str, seed: int, spec: dict, steps: int) -> dict:
    """Train one model for `steps` optimizer steps (1 thread); a finished run with the same settings is reused."""
    import torch

    torch.set_num_threads(1)
    from runkit.io import atomic_write_json, read_json
    from runkit.rundir import create_run_dir
    from transition_matching.config import make_config, resolve
    from transition_matching.trainer import config_dict, load_training_data, train

    path = run_path(Path(root), data, seed, spec["name"])
    settings = canon({**DATA[data]["train"], **{k: v for k, v in spec.items() if k != "name"}})
    done = path / "bench_train.json"
    if done.is_file():
        old = read_json(done)
        if old["steps"] == steps and old.get("settings", settings) == settings:
            return old
    cfg = make_config(data=data, seed=seed, steps=steps, ckpt_every=steps, log_every=50, **settings)
    ds = load_training_data(cfg)
    cfg = resolve(cfg, ds.n_tokens)
    if path.exists():  # an unfinished earlier attempt or other settings
        import shutil

        shutil.rmtree(path)
    res = train(cfg, create_run_dir(path, config_dict(cfg), kind="tm"), data=ds, progress=False)
    out = {"data": data, "seed": seed, "name": spec["name"], "method": spec["method"], "steps": res.step,
           "seconds": res.seconds, "settings": settings}  # fmt: skip
    atomic_write_json(done, out)
    return out


def equal_time_steps(steps: int, fm_seconds: float, dtm_seconds: float) -> int:
    """FM steps that take as long as DTM's training at FM's measured rate (rounded to 10)."""
    return max(10, int(round(steps * dtm_seconds / fm_seconds / 10)) * 10)


def eval_one(
    root: str, data: str, seed: int, mode_name: str, names: list[str], stamp: str = ""
) -> list[dict]:
    """Evaluate the named models of one data set and seed; each model's rows go to its run folder (cell cache)."""
    from runkit.io import atomic_write_json

    out = measure_cells(root, data, seed, mode_name, names, stamp)
    settings = cell_settings(MODES[mode_name], data)
    for (_, _, name), cell in cells_of(out).items():
        atomic_write_json(cell_cache(Path(root), data, seed, name), {"settings": settings, "rows": cell})
    return out


def measure_cells(
    root: str, data: str, seed: int, mode_name: str, names: list[str], stamp: str
) -> list[dict]:
    """Quality and sampling time of every (model, steps, head steps) of the named models, interleaved."""
    import torch

    torch.set_num_threads(1)
    from runkit.io import read_json
    from transition_matching.evaluation import evaluate
    from transition_matching.model import method_config
    from transition_matching.runs import default_labels, draw_samples, load_run, sample_options

    mode = MODES[mode_name]
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
            "times": [r["seconds_per_1000"]], "timed_at": stamp,
            **{k: r[k] for k in ("w2", "energy", "cfid", "class_acc") if k in r},
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
    return out


class InlinePool:
    """The executor interface run in this process, one task at a time (--jobs 1: no worker processes)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, *args) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(fn(*args))
        except Exception as e:  # noqa: BLE001 - handed to the caller through the future, as a pool would
            fut.set_exception(e)
        return fut


def run_plan(root: Path, todo: dict, mode_name: str, jobs: int, known: dict, stamp: str = ""):
    """Train and evaluate the cells in `todo` ((data, seed) -> specs) on `jobs` workers; yields the rows of each
    (data, seed) as soon as they are evaluated. `known` holds the training results ((data, seed, name) ->
    {"steps", "seconds"}) of cells already finished, which the equal-time FM run may need.

    Seed-major order, and follow-up work (the equal-time FM run, the evaluation) goes before further training:
    results arrive early and a run stopped half-way still leaves complete (data, seed) parts for every data set.
    """
    import multiprocessing
    from collections import deque
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    mode = MODES[mode_name]
    specs = {sp["name"]: sp for sp in models_for(mode)}
    need: dict[tuple, set[str]] = {}  # (data, seed) -> models to train before the equal-time run / evaluation
    for (d, s), cell_specs in todo.items():
        names = {sp["name"] for sp in cell_specs if sp["name"] != "fm-eqtime"}
        if any(sp["name"] == "fm-eqtime" for sp in cell_specs):
            names |= {n for n in ("fm", "dtm") if (d, s, n) not in known}
        need[(d, s)] = names
    cost = {"fhtm": 4, "artm": 3, "dtm": 2, "fm": 1}  # slowest first so that the workers finish together
    datasets = list(dict.fromkeys(d for d, _ in todo))
    tasks = [(str(root), d, s, specs[n], mode["steps"][d]) for (d, s), ns in need.items() for n in ns]
    tasks.sort(key=lambda t: (t[2], datasets.index(t[1]), -cost[t[3]["method"]], t[3]["name"]))  # seed-major
    todo_q, ready, in_flight = deque(tasks), deque(), {}
    trained: dict[tuple, dict] = defaultdict(dict)

    def next_step(
        d: str, s: int
    ) -> None:  # all trainings of (d, s) done: the equal-time run or the evaluation
        names = [sp["name"] for sp in todo[(d, s)]]
        if "fm-eqtime" in names and "fm-eqtime" not in trained[(d, s)]:
            fm = trained[(d, s)].get("fm") or known[(d, s, "fm")]
            dtm = trained[(d, s)].get("dtm") or known[(d, s, "dtm")]
            k = equal_time_steps(mode["steps"][d], fm["seconds"], dtm["seconds"])
            ready.append(("eqtime", (str(root), d, s, EQTIME, k)))
        else:
            ready.append(("eval", (str(root), d, s, mode_name, names, stamp)))

    for (d, s), ns in need.items():
        if not ns:
            next_step(d, s)
    t0 = time.time()
    ctx = multiprocessing.get_context("spawn")
    with InlinePool() if jobs <= 1 else ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        while todo_q or ready or in_flight:
            while len(in_flight) < max(1, jobs) and (ready or todo_q):
                kind, targs = ready.popleft() if ready else ("train", todo_q.popleft())
                in_flight[pool.submit(eval_one if kind == "eval" else train_one, *targs)] = (kind, targs)
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for fut in finished:
                kind, targs = in_flight.pop(fut)
                res = fut.result()
                if kind == "eval":
                    print(f"[{time.time() - t0:5.0f} s] evaluated {targs[1]} seed {targs[2]}: {', '.join(targs[4])}",
                          flush=True)  # fmt: skip
                    yield res
                    continue
                d, s = res["data"], res["seed"]
                trained[(d, s)][res["name"]] = res
                print(f"[{time.time() - t0:5.0f} s] trained {d} seed {s} {res['name']}: {res['steps']} steps "
                      f"in {res['seconds']:.0f} s", flush=True)  # fmt: skip
                if kind == "eqtime" or need[(d, s)] <= set(trained[(d, s)]):  # the last training of (d, s)
                    next_step(d, s)


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


def history_lines(history: list[dict]) -> list[str]:
    """One line per invocation that produced rows of this page."""
    out = []
    for i, h in enumerate(history, 1):
        bits = [
            h.get("date", "?"),
            f"{h.get('seconds', 0) / 60:.1f} min",
            f"{h.get('cells', '?')} cells evaluated",
        ]
        if "jobs" in h:
            bits.append(f"{h['jobs']} worker process{'es' if h['jobs'] > 1 else ''} of 1 torch thread")
        if "load_start" in h:
            bits.append(f"{h['cpus']} CPU cores, 1-min load average {h['load_start']:.1f} at the start and "
                        f"{h['load_end']:.1f} at the end")  # fmt: skip
        if h.get("note") and "--note" not in h.get("command", ""):
            bits.append(h["note"])
        out.append(f"{i}. `{h.get('command', '?')}` ({'; '.join(bits)})")
    return out


def page_sections(rows: list[dict], mode: dict, suffix: str, out: Path) -> list[str]:
    """The per-data-set sections (headline bullets, table, training table, plot); writes the plots."""
    sections = []
    for d in [d for d in DATA if any(r["data"] == d for r in rows)]:
        metrics = DATA[d]["metrics"]
        drows = [r for r in rows if r["data"] == d]
        agg = aggregate(drows, metrics)
        png = f"tm_quality_vs_nfe{suffix}_{d}.png"
        plot(agg, d, metrics, out / png)
        settings = {
            **DATA[d]["train"],
            "steps": mode["steps"][d],
            "guidance": DATA[d]["cfg"],
            "n_eval": mode["n_eval"],
        }
        seeds_d = sorted({r["seed"] for r in drows})
        lines = []
        if any(a["method"] == "dtm" for a in agg) and any(a["method"] == "fm" for a in agg):
            lines = key_lines(key_numbers(agg, metrics[0]), metrics[0])
            b, h = cost_fit(agg)
            lines.append(
                f"- Cost model (least squares over the FM and DTM rows): one backbone pass {1000 * b:.1f} ms and one "
                f"head pass {1000 * h:.1f} ms per 1,000 samples, head/backbone = {h / b:.2f}; so DTM 16x4 vs FM 128 "
                f"can be at most 128 / (16 + 64 x {h / b:.2f}) = {128 / (16 + 64 * h / b):.1f}x faster here. (The "
                f"paper's ~7x implies head/backbone ~0.04.)"
            )
        sec = [f"## {d}", f"Seeds {seeds_d}. Settings: `{json.dumps(settings)}`.", "\n".join(lines),
               markdown_table(agg, metrics),
               "Training (same steps for all; `fm-eqtime` = FM for as many steps as fit in DTM's training seconds):",
               training_table(drows), f"![{d}]({png})"]  # fmt: skip
        sections.append("\n\n".join(x for x in sec if x))
    return sections


def write_outputs(out: Path, mode_name: str, rows: list[dict], history: list[dict]) -> None:
    """The JSON of raw rows, the markdown page and the plots of every cell present."""
    mode = MODES[mode_name]
    suffix = "" if mode_name == "full" else f"_{mode_name}"
    summary = {"mode": mode_name, "settings": data_settings(mode, rows), "runs": history, "rows": rows}
    json_path(out, suffix).write_text(json.dumps(summary, indent=1), encoding="utf-8")
    grid = plan_cells(DEFAULT_DATA, mode["seeds"], mode)
    done = set(cells_of(rows))
    n_grid = sum(len(v) for v in grid.values())
    n_done = sum((d, s, sp["name"]) in done for (d, s), v in grid.items() for sp in v)
    partial = (
        ""
        if n_done == n_grid
        else f" PARTIAL: {n_done} of the {n_grid} cells of the default grid are present."
    )
    timing = (f"the fastest of {1 + mode['time_repeats']} interleaved timed draws of 1,000 samples"
              if mode["time_repeats"] else f"the timed draw of the {mode['n_eval']} metric samples, per 1,000")  # fmt: skip
    title = "# Transition Matching: quality vs backbone evaluations and wall time"
    header = "\n\n".join([
        title + ("" if mode_name == "full" else f" ({mode_name})"),
        "Made by these invocations (a cell = one data set, seed and model; each invocation skipped the cells already "
        "present and added its own):\n\n" + "\n".join(history_lines(history)),
        f"Seeds {sorted({r['seed'] for r in rows})}; metrics are mean ± std over seeds (the `seeds` column counts "
        f"them), seconds the median over seeds of {timing}. All models of one data set and seed that one invocation "
        "evaluated were timed interleaved in one process; cells from different invocations were timed under "
        "different machine load, so compare wall times within one invocation or use the cost-model column. Raw "
        f"per-seed rows (with `timed_at`): `tm_quality_vs_nfe{suffix}.json`.{partial}",
    ])  # fmt: skip
    write_markdown(out / f"tm_quality_vs_nfe{suffix}.md", header, page_sections(rows, mode, suffix, out))
    print(f"wrote {out / f'tm_quality_vs_nfe{suffix}.md'}", flush=True)


# ----------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="1 seed, short training, smaller grid (< 10 min)"
    )
    parser.add_argument("--mode", choices=list(MODES), default="full", help=argparse.SUPPRESS)
    parser.add_argument("--data", "--datasets", nargs="+", choices=list(DATA), default=list(DEFAULT_DATA),
                        help=f"data sets [{' '.join(DEFAULT_DATA)}]; mnist14 (MNIST-5k at 14x14) is optional")  # fmt: skip
    parser.add_argument("--seeds", nargs="+", type=int, help="override the seeds of the mode")
    parser.add_argument(
        "--methods", nargs="+", choices=METHODS, default=list(METHODS), help="models to run [all]"
    )
    parser.add_argument(
        "--jobs", type=int, default=2, help="worker processes of one thread each (1: in-process) [2]"
    )
    parser.add_argument("--root", help="folder of the trained runs [runs/bench/tm_quality_vs_nfe[_quick]]")
    parser.add_argument("--out", default=str(RESULTS), help="folder for the .md, .json and .png results")
    parser.add_argument("--no-eqtime", action="store_true", help="skip the equal-wall-time FM run")
    parser.add_argument(
        "--ar-seeds", type=int, help="train ARTM/FHTM only for the first N seeds (saves time)"
    )
    parser.add_argument(
        "--fresh", action="store_true", help="start a new JSON instead of adding to the old one"
    )
    parser.add_argument(
        "--note", default="", help="a remark on the machine's load, stored with this invocation"
    )
    parser.add_argument(
        "--report-only", action="store_true", help="only rewrite the page from the stored cells"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    mode_name = "quick" if args.quick else args.mode
    mode = MODES[mode_name]
    suffix = "" if mode_name == "full" else f"_{mode_name}"
    seeds = tuple(args.seeds) if args.seeds else mode["seeds"]
    root = Path(args.root or ROOT / "runs" / "bench" / f"tm_quality_vs_nfe{suffix}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0, load_start = time.time(), os.getloadavg()[0]
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows, history = load_previous(json_path(out, suffix), mode_name, args.fresh)
    wanted = plan_cells(args.data, seeds, mode, args.ar_seeds, args.methods, not args.no_eqtime)
    present = set(cells_of(rows))
    todo: dict[tuple, list[dict]] = {}
    for (d, s), specs in wanted.items():
        for sp in specs:
            if (d, s, sp["name"]) in present:
                continue
            cached = read_cell_cache(root, d, s, sp["name"], cell_settings(mode, d))
            if cached is not None:
                rows += cached
            else:
                todo.setdefault((d, s), []).append(sp)
    n_wanted, n_todo = sum(map(len, wanted.values())), sum(map(len, todo.values()))
    print(f"{n_wanted} cells asked for: {n_wanted - n_todo} already present, {n_todo} to run", flush=True)
    if args.report_only or not todo:
        write_outputs(out, mode_name, rows, history)
        return 0
    if any(
        d in IMAGE_DATA for d, _ in todo
    ):  # train the cached classifiers once, before parallel workers want them
        from transition_matching.classifier import get_classifier
        from transition_matching.config import make_config
        from transition_matching.trainer import load_training_data

        for d in {d for d, _ in todo if d in IMAGE_DATA}:
            get_classifier(load_training_data(make_config(data=d, **DATA[d]["train"])))
    known = {
        k: {"steps": v[0]["train_steps"], "seconds": v[0]["train_seconds"]} for k, v in cells_of(rows).items()
    }
    entry = {"command": shlex.join(["python", "benchmarks/tm_quality_vs_nfe.py", *(sys.argv[1:] if argv is None else argv)]),
             "date": stamp, "jobs": args.jobs, "cpus": os.cpu_count(), "load_start": load_start, "note": args.note,
             "cells": 0}  # fmt: skip
    for res in run_plan(root, todo, mode_name, args.jobs, known, stamp):
        rows = merge_rows(rows, res)
        entry.update(cells=entry["cells"] + len(cells_of(res)), seconds=time.time() - t0,
                     load_end=os.getloadavg()[0])  # fmt: skip
        write_outputs(out, mode_name, rows, history + [entry])
    print(f"finished in {time.time() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The study's work: train one model, evaluate the models of one data set and seed, and run a plan of cells on
worker processes (or in this process)."""

from __future__ import annotations

import random
import time
from collections import defaultdict
from concurrent.futures import Future
from pathlib import Path

from transition_matching.study.plan import (
    EQTIME,
    canon,
    cell_cache,
    cell_settings,
    cells_of,
    head_solver,
    mode_of,
    models_for,
    n_eval_of,
    run_path,
    sampling_grid,
    specs_of,
)


def model_settings(mode: dict, data: str, spec: dict) -> dict:
    """The training settings of one model of the study (the data set's, with the model's method settings)."""
    return canon({**specs_of(mode)[data]["train"], **{k: v for k, v in spec.items() if k != "name"}})


def finished_training(
    root: str | Path, data: str, seed: int, spec: dict, steps: int, mode_name: str | dict
) -> dict | None:
    """The record of a finished training run of this cell with the same steps, settings and curve spec (what
    `train_one` reuses), else None."""
    from runkit.io import read_json
    from transition_matching.study.quality import curve_spec

    mode = mode_of(mode_name)
    done = run_path(Path(root), data, seed, spec["name"]) / "bench_train.json"
    if not done.is_file():
        return None
    old, settings = read_json(done), model_settings(mode, data, spec)
    same = (
        old["steps"] == steps
        and old.get("settings", settings) == settings
        and old.get("curve_spec") == canon(curve_spec(mode, data, spec["name"], steps))  # as stored in JSON
    )
    return old if same else None


def train_one(
    root: str, data: str, seed: int, spec: dict, steps: int, mode_name: str | dict = "full"
) -> dict:
    """Train one model for `steps` optimizer steps (1 thread); a finished run with the same settings is reused.
    In a mode with quality curves, FM and DTM are evaluated every steps / points steps while they train. The
    mode is a name in MODES or a mode's dict (as everywhere in this module)."""
    import torch

    torch.set_num_threads(1)
    from runkit.io import atomic_write_json
    from runkit.rundir import create_run_dir
    from transition_matching.config import make_config, resolve
    from transition_matching.study.quality import CurveRecorder, curve_spec
    from transition_matching.trainer import config_dict, load_training_data, train

    old = finished_training(root, data, seed, spec, steps, mode_name)
    if old is not None:
        return old
    mode = mode_of(mode_name)
    path = run_path(Path(root), data, seed, spec["name"])
    settings = model_settings(mode, data, spec)
    curve = curve_spec(mode, data, spec["name"], steps)
    done = path / "bench_train.json"
    cfg = make_config(data=data, seed=seed, steps=steps, ckpt_every=steps, log_every=50, **settings)
    ds = load_training_data(cfg)
    cfg = resolve(cfg, ds.n_tokens)
    if path.exists():  # an unfinished earlier attempt or other settings
        import shutil

        shutil.rmtree(path)
    run = create_run_dir(path, config_dict(cfg), kind="tm")
    rec = CurveRecorder(run, cfg, ds, curve, seed) if curve else None
    res = train(cfg, run, data=ds, progress=False, evaluate_every=curve["every"] if curve else 0,
                on_evaluate=rec)  # fmt: skip
    out = {"data": data, "seed": seed, "name": spec["name"], "method": spec["method"], "steps": res.step,
           "seconds": res.seconds, "settings": settings}  # fmt: skip
    if curve:
        out.update(curve_spec=curve, curve=rec.points, curve_seconds=res.eval_seconds)
    atomic_write_json(done, out)
    return out


def equal_time_steps(steps: int, fm_seconds: float, dtm_seconds: float) -> int:
    """FM steps that take as long as DTM's training at FM's measured rate (rounded to 10)."""
    return max(10, int(round(steps * dtm_seconds / fm_seconds / 10)) * 10)


def eval_one(
    root: str, data: str, seed: int, mode_name: str | dict, names: list[str], stamp: str = ""
) -> list[dict]:
    """Evaluate the named models of one data set and seed; each model's rows go to its run folder (cell cache)."""
    from runkit.io import atomic_write_json

    out = measure_cells(root, data, seed, mode_name, names, stamp)
    settings = cell_settings(mode_of(mode_name), data)
    for (_, _, name), cell in cells_of(out).items():
        atomic_write_json(cell_cache(Path(root), data, seed, name), {"settings": settings, "rows": cell})
    return out


def measure_cells(
    root: str, data: str, seed: int, mode_name: str | dict, names: list[str], stamp: str
) -> list[dict]:
    """Quality and sampling time of every (model, steps, head steps[, head solver]) of the named models,
    interleaved; a row of a configuration with a head solver records it as `head_solver`."""
    import torch

    torch.set_num_threads(1)
    from runkit.io import read_json
    from transition_matching.evaluation import evaluate
    from transition_matching.model import method_config
    from transition_matching.runs import default_labels, draw_samples, load_run, sample_options

    mode = mode_of(mode_name)
    spec = specs_of(mode)[data]
    loaded = {n: load_run(run_path(Path(root), data, seed, n)) for n in names}
    jobs = [
        (n, *g)
        for n in names
        for g in sampling_grid(mode, n, loaded[n].config.method, method_config(loaded[n].config).T)
    ]
    rng = random.Random(seed)
    rng.shuffle(jobs)
    rows, cfg_w, n = {}, spec["cfg"], n_eval_of(mode, data)
    metrics = mode.get("row_metrics", ("w2", "energy", "cfid", "class_acc"))
    for name, steps, S, *solver in jobs:  # quality (and one timing) per configuration
        lr = loaded[name]
        opts = sample_options(lr, steps=steps, head_steps=S, cfg=cfg_w, **head_solver(solver))
        r = evaluate(lr, n, opts, seed=1000 + seed, metrics=metrics)
        train = read_json(run_path(Path(root), data, seed, name) / "bench_train.json")
        rows[(name, steps, S, *solver)] = {
            "data": data, "seed": seed, "model": name, "method": lr.config.method, "trained_T": method_config(lr.config).T,
            "steps": steps, "head_steps": S if lr.method.uses_head else 0, "backbone_evals": r["backbone_evals"],
            "head_evals": r["head_evals"], "train_steps": train["steps"], "train_seconds": train["seconds"],
            "times": [r["seconds_per_1000"]], "timed_at": stamp, **{k: r[k] for k in metrics if k in r},
            **head_solver(solver),
        }  # fmt: skip
    for _ in range(mode["time_repeats"]):  # extra timing rounds, again interleaved in a fresh order
        rng.shuffle(jobs)
        for name, steps, S, *solver in jobs:
            lr = loaded[name]
            labels = default_labels(lr, 1000)
            opts = sample_options(lr, steps=steps, head_steps=S, cfg=cfg_w, **head_solver(solver))
            s = draw_samples(lr, 1000, opts, labels, seed)
            rows[(name, steps, S, *solver)]["times"].append(s.seconds)
    out = list(rows.values())
    for r in out:
        r["seconds_per_1000"] = min(r["times"])
    grid = mode.get("grid")
    if grid and loaded[names[0]].data.is_image and seed == grid["seed"]:
        from transition_matching.study.quality import draw_grids

        draw_grids(loaded, Path(root), data, seed, grid, cfg_w)
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


def run_plan(
    root: Path,
    todo: dict,
    mode_name: str | dict,
    jobs: int,
    known: dict,
    stamp: str = "",
    steps: dict | None = None,
):
    """Train and evaluate the cells in `todo` ((data, seed) -> specs) on `jobs` workers; yields the rows of each
    (data, seed) as soon as they are evaluated. `known` holds the training results ((data, seed, name) ->
    {"steps", "seconds"}) of cells already finished, which the equal-time FM run may need. `steps` gives the
    training steps of (data, name) (equal compute); by default every model trains the mode's steps.

    Seed-major order, and follow-up work (the equal-time FM run, the evaluation) goes before further training:
    results arrive early and a run stopped half-way still leaves complete (data, seed) parts for every data set.
    """
    import multiprocessing
    from collections import deque
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    mode = mode_of(mode_name)
    specs = {sp["name"]: sp for sp in models_for(mode)}
    need: dict[tuple, set[str]] = {}  # (data, seed) -> models to train before the equal-time run / evaluation
    for (d, s), cell_specs in todo.items():
        names = {sp["name"] for sp in cell_specs if sp["name"] != "fm-eqtime"}
        if any(sp["name"] == "fm-eqtime" for sp in cell_specs):
            names |= {n for n in ("fm", "dtm") if (d, s, n) not in known}
        need[(d, s)] = names
    cost = {"fhtm": 4, "artm": 3, "dtm": 2, "fm": 1}  # slowest first so that the workers finish together
    datasets = list(dict.fromkeys(d for d, _ in todo))
    steps = steps or {}
    tasks = [(str(root), d, s, specs[n], steps.get((d, n), mode["steps"][d]), mode_name)
             for (d, s), ns in need.items() for n in ns]  # fmt: skip
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
            ready.append(("eqtime", (str(root), d, s, EQTIME, k, mode_name)))
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

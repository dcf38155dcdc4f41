"""One invocation of the study: skip the cells already present, run the rest, and rewrite the page after each."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from transition_matching.study.page import write_outputs
from transition_matching.study.plan import (
    EXTRAS,
    IMAGE_DATA,
    METHODS,
    MODES,
    STUDY,
    cell_settings,
    cells_of,
    default_datasets,
    json_path,
    load_extras,
    load_previous,
    merge_rows,
    plan_cells,
    read_cell_cache,
    specs_of,
    suffix_of,
)
from transition_matching.study.workers import run_plan


def run_study(
    mode_name: str,
    out: Path,
    root: Path,
    datasets: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    methods: Sequence[str] | None = None,
    jobs: int = 2,
    eqtime: bool = True,
    ar_seeds: int | None = None,
    fresh: bool = False,
    note: str = "",
    report_only: bool = False,
    command: str = "",
    estimate_only: bool = False,
) -> None:
    """Add the wanted cells (datasets x seeds x methods of the mode; the mode's data sets, seeds and methods by
    default) that are not yet in out's JSON or in the run folders under `root`, and write the page, JSON and plots
    to `out`. `command` and `note` describe this invocation in the page's history; report_only only rewrites the
    page; estimate_only stops after printing the calibration and the time estimate (equal-compute modes)."""
    mode = MODES[mode_name]
    suffix = suffix_of(mode_name)
    datasets = tuple(datasets) if datasets else default_datasets(mode)
    seeds = tuple(seeds) if seeds else mode["seeds"]
    methods = tuple(methods) if methods else tuple(mode.get("methods", METHODS))
    out.mkdir(parents=True, exist_ok=True)
    t0, load_start = time.time(), os.getloadavg()[0]
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows, history = load_previous(json_path(out, suffix), mode_name, fresh)
    extras = {k: {} for k in EXTRAS} if fresh else load_extras(json_path(out, suffix), mode_name, rows)
    extras = {k: extras.get(k, {}) for k in EXTRAS}
    wanted = plan_cells(datasets, seeds, mode, ar_seeds, methods, eqtime)
    rows, todo = split_todo(mode, root, wanted, rows, extras)
    if report_only or (not todo and not estimate_only):
        restore_extras(mode, root, rows, extras)
        write_outputs(out, mode_name, rows, history, extras)
        return
    prepare_classifiers(mode, todo)
    steps = None
    if mode.get("equal_compute"):
        steps = prepare_equal_compute(mode, root, todo, extras, jobs, load_start)
        if estimate_only:
            return
    known = {
        k: {"steps": v[0]["train_steps"], "seconds": v[0]["train_seconds"]} for k, v in cells_of(rows).items()
    }
    entry = {"command": command, "date": stamp, "jobs": jobs, "cpus": os.cpu_count(), "load_start": load_start,
             "note": note, "cells": 0}  # fmt: skip
    for res in run_plan(root, todo, mode_name, jobs, known, stamp, steps):
        rows = merge_rows(rows, res)
        cells = list(cells_of(res))
        add_curves(extras, root, cells)
        if mode.get("grid"):
            from transition_matching.study.quality import render_grids

            for d in {c[0] for c in cells}:
                render_grids(root, out / f"{STUDY}{suffix}_{d}_samples.png", d, mode)
        entry.update(cells=entry["cells"] + len(cells), seconds=time.time() - t0, load_end=os.getloadavg()[0])
        write_outputs(out, mode_name, rows, history + [entry], extras)
    print(f"finished in {time.time() - t0:.0f} s", flush=True)


def split_todo(
    mode: dict, root: Path, wanted: dict, rows: list[dict], extras: dict
) -> tuple[list[dict], dict[tuple, list[dict]]]:
    """The wanted cells ((data, seed) -> model specs) split into those present (in rows, or finished in their run
    folder with the mode's settings: their rows and curves are added) and those to run, which are returned."""
    present = set(cells_of(rows))
    todo: dict[tuple, list[dict]] = {}
    for (d, s), specs in wanted.items():
        for sp in specs:
            if (d, s, sp["name"]) in present:
                continue
            cached = read_cell_cache(root, d, s, sp["name"], cell_settings(mode, d))
            if cached is not None:
                rows = rows + cached
                add_curves(extras, root, [(d, s, sp["name"])])
            else:
                todo.setdefault((d, s), []).append(sp)
    n_wanted, n_todo = sum(map(len, wanted.values())), sum(map(len, todo.values()))
    print(f"{n_wanted} cells asked for: {n_wanted - n_todo} already present, {n_todo} to run", flush=True)
    return rows, todo


def prepare_classifiers(mode: dict, todo: dict) -> None:
    """Train (or load) the cached classifiers of the image data sets in todo once, before any worker needs them."""
    from transition_matching.classifier import get_classifier
    from transition_matching.config import make_config
    from transition_matching.trainer import load_training_data

    for d in dict.fromkeys(d for d, _ in todo if d in IMAGE_DATA):
        data = load_training_data(make_config(data=d, **specs_of(mode)[d]["train"]))
        get_classifier(data)
        if "indep_acc" in mode.get("row_metrics", ()):
            get_classifier(data, kind="cnn")


def restore_extras(mode: dict, root: Path, rows: list[dict], extras: dict) -> None:
    """Calibrations (from the run folders) and floors of data sets with rows that the JSON lacks (a --fresh
    record of cells that are all in the run folders)."""
    if not mode.get("equal_compute"):
        return
    from runkit.io import read_json
    from transition_matching.study.budget import calibration_path
    from transition_matching.study.quality import floors

    for d in dict.fromkeys(r["data"] for r in rows):
        path = calibration_path(root, d)
        if d not in extras["calibration"] and path.is_file():
            steps = {r["model"]: r["train_steps"] for r in rows if r["data"] == d}
            extras["calibration"][d] = {**read_json(path), "steps": steps}
        if d not in extras["floors"]:
            extras["floors"][d] = floors(mode, d)


def add_curves(extras: dict, root: Path, cells) -> None:
    """Take the quality-vs-steps curves of these cells from their run folders into the JSON's extras."""
    from transition_matching.study.quality import read_curves

    for d, curves in read_curves(root, cells).items():
        extras["curves"].setdefault(d, {}).update(curves)


def prepare_equal_compute(
    mode: dict,
    root: Path,
    todo: dict,
    extras: dict,
    jobs: int,
    load: float = 0.0,
    measure_floors: bool = True,
) -> dict:
    """Calibrate the data sets of todo, print the cost regime, the equal-compute steps and the time estimate,
    and measure the data-vs-data floors (unless measure_floors is False); returns the training steps of (data,
    model name)."""
    from transition_matching.study.budget import (
        calibrate,
        describe_calibration,
        describe_estimate,
        estimate,
        training_steps,
    )
    from transition_matching.study.quality import floors

    t0 = time.time()
    cals = {}
    for d in dict.fromkeys(d for d, _ in todo):
        names = sorted({sp["name"] for (dd, _), specs in todo.items() if dd == d for sp in specs} | {"fm"})
        cals[d] = calibrate(root, d, mode, names)
    steps = training_steps(mode, todo, cals)
    for d, cal in cals.items():
        print(describe_calibration(d, cal, steps), flush=True)
        before = extras["calibration"].get(d, {}).get("steps", {})
        extras["calibration"][d] = {
            **cal,
            "steps": {**before, **{n: k for (dd, n), k in steps.items() if dd == d}},
        }
        if measure_floors and d not in extras["floors"]:
            extras["floors"][d] = floors(mode, d)
    print(f"calibration and floors took {time.time() - t0:.0f} s", flush=True)
    from transition_matching.study.workers import finished_training

    trained = frozenset(
        (d, s, sp["name"])
        for (d, s), specs in todo.items()
        for sp in specs
        if finished_training(root, d, s, sp, steps[(d, sp["name"])], mode) is not None
    )
    if trained:
        print(f"{len(trained)} of the cells to run reuse a finished training run", flush=True)
    est = estimate(mode, todo, steps, cals, jobs, trained)
    print(describe_estimate(est, mode.get("target_min"), load, os.cpu_count() or 1), flush=True)
    return steps

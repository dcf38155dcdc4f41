"""One invocation of the study: skip the cells already present, run the rest, and rewrite the page after each."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from transition_matching.study.page import write_outputs
from transition_matching.study.plan import (
    DATA,
    DEFAULT_DATA,
    IMAGE_DATA,
    METHODS,
    MODES,
    cell_settings,
    cells_of,
    json_path,
    load_previous,
    merge_rows,
    plan_cells,
    read_cell_cache,
    suffix_of,
)
from transition_matching.study.workers import run_plan


def run_study(
    mode_name: str,
    out: Path,
    root: Path,
    datasets: Sequence[str] = DEFAULT_DATA,
    seeds: Sequence[int] | None = None,
    methods: Sequence[str] = METHODS,
    jobs: int = 2,
    eqtime: bool = True,
    ar_seeds: int | None = None,
    fresh: bool = False,
    note: str = "",
    report_only: bool = False,
    command: str = "",
) -> None:
    """Add the wanted cells (datasets x seeds x methods of the mode; the mode's seeds by default) that are not yet
    in out's JSON or in the run folders under `root`, and write the page, JSON and plots to `out`. `command` and
    `note` describe this invocation in the page's history; report_only only rewrites the page."""
    mode = MODES[mode_name]
    suffix = suffix_of(mode_name)
    seeds = tuple(seeds) if seeds else mode["seeds"]
    out.mkdir(parents=True, exist_ok=True)
    t0, load_start = time.time(), os.getloadavg()[0]
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows, history = load_previous(json_path(out, suffix), mode_name, fresh)
    wanted = plan_cells(datasets, seeds, mode, ar_seeds, methods, eqtime)
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
    if report_only or not todo:
        write_outputs(out, mode_name, rows, history)
        return
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
    entry = {"command": command, "date": stamp, "jobs": jobs, "cpus": os.cpu_count(), "load_start": load_start,
             "note": note, "cells": 0}  # fmt: skip
    for res in run_plan(root, todo, mode_name, jobs, known, stamp):
        rows = merge_rows(rows, res)
        entry.update(cells=entry["cells"] + len(cells_of(res)), seconds=time.time() - t0,
                     load_end=os.getloadavg()[0])  # fmt: skip
        write_outputs(out, mode_name, rows, history + [entry])
    print(f"finished in {time.time() - t0:.0f} s", flush=True)

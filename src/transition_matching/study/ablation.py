"""The DTM ablation on digits behind benchmarks/tm_dtm_ablation.py: which levers bring DTM 16x4 to flow
matching's image quality at equal training compute.

It starts from DTM 16x4 in the paper's regime (configs/tm/dtm-digits-paper.toml) and adds one lever at a time:
head_draws 4; logit-normal t and s; the paper's head shape (6 residual blocks, the preset has 2) at about 2 % of
the backbone's parameters (the width is found by counting parameters with transition_matching.cost); the
stochastic head sampler sde (sampling only, so it is evaluated on the baseline model and on the combination);
then all levers together. The references are FM with
128 and 256 Euler steps, trained with uniform and with logit-normal t. Every model trains for the same compute
(study.budget calibrates the seconds per step; steps = budget x FM's seconds per step / the model's own), for 3
seeds, and every model's cFID is measured while it trains (quality against training steps).

Two follow-ups (`part`) reuse the same machinery with the levers' recipe: "mnist" trains FM (uniform and
logit-normal t) and DTM with all training levers on MNIST 28x28 (sample grids of seed 0), and "causal" trains
ARTM and FHTM (the paper's T = 3 schedule), plain and with the recipe's head levers, against FM on digits, in the
levers' run folder so that its FM runs are reused.

The study's machinery does the work. The ablation is a mode dict built here and handed whole to the worker
processes. plan.cell_settings gives the resume keys, workers.run_plan trains, records the curves and evaluates,
budget calibrates and estimates, and runner finds the present and cached cells, the classifiers and the
equal-compute steps. The table, the verdict and the page are in ablation_page.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from runkit.errors import UserError
from transition_matching.study import runner
from transition_matching.study.ablation_page import write_page
from transition_matching.study.plan import (
    DATA_PAPER,
    EXTRAS,
    IMAGE_METRICS,
    MODES,
    T3,
    cell_settings,
    cells_of,
    merge_rows,
    models_for,
)
from transition_matching.study.workers import run_plan

DATA = "digits"  # the levers' and the causal part's data set
PARTS = {"levers": "digits", "mnist": "mnist", "causal": "digits"}  # part -> data set
STEM = "tm_dtm_ablation"
LN = "logit_normal"
SAMPLER = (16, 4)  # DTM's transitions x head steps in every row and curve
FM_STEPS = (128, 256)
PAPER_BUDGET = MODES["paper"]["steps"]  # FM steps of the paper mode per data set (digits 1,200, MNIST 1,000)
SCALE = 4  # the default budget: 4x the paper mode's, as in tm_quality_vs_nfe_paper_long
HEAD_SHARE = 0.02  # lever (c): head parameters / backbone parameters (the paper: a 40M head on a 1.7B DiT)
# lever (c)'s residual blocks: the paper's head (MAR's, 6 blocks of width 1024); the preset has 2
HEAD_DEPTH = 6
SDE = "sde"  # lever (d): Euler-Maruyama with ETA 1 (solvers.py)
SIZES = {  # per size: seeds, FM budget (None: SCALE x the paper's), samples per row, curve, time target
    "full": {"seeds": (0, 1, 2), "budget": None, "n_eval": 600, "points": 8, "curve_n": 300, "target_min": None},
    "quick": {"seeds": (0,), "budget": 150, "n_eval": 200, "points": 2, "curve_n": 100, "target_min": 10},
}  # fmt: skip
# MNIST's samples are dear (FM 256: ~0.8 s per image on 1 thread), so fewer of them: the paper mode's 200
MNIST_SIZES = {"full": {"n_eval": 200, "curve_n": 100}, "quick": {"budget": 60, "n_eval": 60, "curve_n": 40}}
AR_HEAD_STEPS = (4, 16)  # the causal part's head steps (the paper study's)
TITLES = {
    "levers": "DTM ablation on digits: which levers bring DTM 16x4 to flow matching's quality",
    "mnist": "DTM's recipe on MNIST 28x28: DTM 16x4 with the ablation's levers against flow matching",
    "causal": "The causal variants on digits: ARTM and FHTM, plain and with the ablation's levers, against flow "
    "matching",
}


def lever_models(head: dict) -> list[dict]:
    """The trained models: FM with uniform and with logit-normal t, the DTM baseline, one DTM per training lever
    (each differs from the baseline in that lever only), and DTM with all of them."""
    ln = {"time_dist": LN, "head_time_dist": LN}
    return [
        {"name": "fm", "method": "fm"},
        {"name": "fm-logit", "method": "fm", "time_dist": LN},
        {"name": "dtm", "method": "dtm"},
        {"name": "dtm-draws4", "method": "dtm", "head_draws": 4},
        {"name": "dtm-logit", "method": "dtm", **ln},
        {"name": "dtm-head", "method": "dtm", "head_width": head["width"], "head_depth": head["depth"]},
        {
            "name": "dtm-all",
            "method": "dtm",
            "head_draws": 4,
            **ln,
            "head_width": head["width"],
            "head_depth": head["depth"],
        },
    ]


def recipe(head: dict) -> dict:
    """The training levers that every DTM row of the ablation gained from (head_draws 4, logit-normal s, the
    paper's head shape); DTM adds logit-normal t (its continuous time), which ARTM/FHTM's T = 3 schedule lacks."""
    return {"head_draws": 4, "head_time_dist": LN, "head_width": head["width"], "head_depth": head["depth"]}


def mnist_models(head: dict) -> list[dict]:
    """The MNIST part: FM with both time samplings and DTM with all training levers."""
    return [{"name": "fm", "method": "fm"}, {"name": "fm-logit", "method": "fm", "time_dist": LN},
            {"name": "dtm-all", "method": "dtm", "time_dist": LN, **recipe(head)}]  # fmt: skip


def causal_models(head: dict) -> list[dict]:
    """The causal part: FM with both time samplings (the levers' runs), ARTM and FHTM with the paper's T = 3
    schedule, plain and with the recipe's head levers."""
    out = [{"name": "fm", "method": "fm"}, {"name": "fm-logit", "method": "fm", "time_dist": LN}]
    for m in ("artm", "fhtm"):
        out += [{"name": m, "method": m, "schedule": T3}, {"name": f"{m}-all", "method": m, "schedule": T3,
                                                           **recipe(head)}]  # fmt: skip
    return out


def fm_variants() -> list[dict]:
    """FM 128 and 256 Euler steps, trained with uniform and with logit-normal t (the references)."""
    out = []
    for k in FM_STEPS:
        for model, t in (("fm", "uniform"), ("fm-logit", "logit-normal")):
            out.append({"key": f"{model}-{k}", "label": f"FM {k} ({t} t)", "lever": "reference", "model": model,
                        "method": "fm", "steps": k, "head_steps": 0, "head_solver": "euler"})  # fmt: skip
    return out


def mnist_variants(head: dict, sde: str = SDE) -> list[dict]:
    """The levers' rows of the models the MNIST part trains: DTM with all levers (sde and Euler head) and FM."""
    return [v for v in variants(head, sde) if v["model"] in ("dtm-all", "fm", "fm-logit")]


def causal_variants(head: dict, sde: str = SDE) -> list[dict]:
    """ARTM-3 and FHTM-3 at 4 and 16 head steps (Euler), the recipe's models also with the sde head sampler."""
    out = []
    for m in ("artm", "fhtm"):
        for S in AR_HEAD_STEPS:
            out.append({"key": f"{m}-{S}", "label": f"{m.upper()}-3 x{S}", "lever": "none (the paper's)",
                        "model": m, "method": m, "steps": 3, "head_steps": S, "head_solver": "euler"})  # fmt: skip
            for solver in ("euler", sde):
                out.append({"key": f"{m}-all-{S}-{solver}", "label": f"{m.upper()}-3 x{S}, recipe, {solver} head",
                            "lever": f"head_draws 4, logit-normal s, head {head['depth']} x {head['width']}"
                            + ("" if solver == "euler" else f", head sampler {sde}"),
                            "model": f"{m}-all", "method": m, "steps": 3, "head_steps": S,
                            "head_solver": solver})  # fmt: skip
    return out + fm_variants()


def variants(head: dict, sde: str = SDE) -> list[dict]:
    """The rows of the table: a trained model sampled one way (steps, head steps, head solver) and the lever it
    adds to the baseline. FM rows have no head (head steps 0)."""
    T, S = SAMPLER

    def dtm(key: str, label: str, lever: str, model: str, solver: str = "euler") -> dict:
        return {"key": key, "label": f"DTM {T}x{S}{label}", "lever": lever, "model": model, "method": "dtm",
                "steps": T, "head_steps": S, "head_solver": solver}  # fmt: skip

    w, d, share = head["width"], head["depth"], f"{100 * head['share']:.1f} %"
    out = [
        dtm("baseline", " baseline", "none", "dtm"),
        dtm("draws4", " + head_draws 4", "head_draws 4 (was 1)", "dtm-draws4"),
        dtm("logit", " + logit-normal t, s", "time_dist and head_time_dist logit_normal", "dtm-logit"),
        dtm("head", f" + head {d} x {w}", f"the paper's head shape ({d} blocks) at {share} of the backbone's "
            "parameters", "dtm-head"),
        dtm("sde", f" + {sde} head sampler", f"head sampler {sde} (sampling only: the baseline model)", "dtm", sde),
        dtm("all", ", all levers", f"all four (head sampler {sde})", "dtm-all", sde),
        dtm("all-euler", ", all training levers", "all but the sampler (Euler head)", "dtm-all"),
    ]  # fmt: skip
    return out + fm_variants()


def head_width_for(
    train: dict, share: float = HEAD_SHARE, step: int = 4, depth: int | None = None, data: str = DATA
) -> dict:
    """The head width (a multiple of `step`) whose head, `depth` residual blocks deep (None: the settings'
    depth), has parameters closest to `share` of the backbone's, counted as `tm cost` counts them
    (cost.config_pass_cost on DTM with these settings); with that share, the settings' own head (width, depth,
    share) and the backbone's parameters."""
    import dataclasses

    from transition_matching.config import make_config, resolve
    from transition_matching.cost import config_pass_cost
    from transition_matching.trainer import load_training_data

    cfg = make_config(method="dtm", data=data, **train)
    ds = load_training_data(cfg)
    cfg = resolve(cfg, ds.n_tokens)
    depth = cfg.head_depth if depth is None else depth

    def share_of(width: int) -> float:
        c = config_pass_cost(dataclasses.replace(cfg, head_width=width, head_depth=depth), ds, rows=ds.n_tokens,
                             repeats=0)  # fmt: skip
        return c.head_params / c.backbone_params

    base = config_pass_cost(cfg, ds, rows=ds.n_tokens, repeats=0)
    width = max(step, round(cfg.head_width / step) * step)
    seen = {width: share_of(width)}
    up = seen[width] < share  # walk from the preset's width towards the share: the head grows with its width
    while (seen[width] < share) == up and (up or width > step):
        width += step if up else -step
        seen[width] = share_of(width)
    best = min(seen.items(), key=lambda kv: (abs(kv[1] - share), kv[0]))
    return {"width": best[0], "depth": depth, "share": best[1], "target": share, "preset_width": cfg.head_width,
            "preset_depth": cfg.head_depth, "preset_share": base.head_params / base.backbone_params,
            "backbone_params": base.backbone_params}  # fmt: skip


def build_mode(
    quick: bool = False,
    scale: int = SCALE,
    head_share: float = HEAD_SHARE,
    sde: str = SDE,
    train: dict | None = None,
    part: str = "levers",
) -> dict:
    """The ablation as a study mode: the part's data set in the paper's regime (or `train`'s networks), its
    models (lever_models, mnist_models or causal_models), each evaluated at its table rows' samplers, curves for
    FM and DTM, equal compute."""
    from transition_matching.solvers import sde_eta

    if part not in PARTS:
        raise UserError(f"unknown part {part!r}; one of {', '.join(PARTS)}")
    sde_eta(sde)  # sde or sde:ETA, else a UserError
    data = PARTS[part]
    which = "quick" if quick else "full"
    size = {**SIZES[which], **(MNIST_SIZES[which] if data == "mnist" else {})}
    spec = {**DATA_PAPER[data], **({"train": train} if train else {})}
    head = head_width_for(spec["train"], head_share, depth=HEAD_DEPTH, data=data)
    models = {"levers": lever_models, "mnist": mnist_models, "causal": causal_models}[part](head)
    rows = {"levers": variants, "mnist": mnist_variants, "causal": causal_variants}[part](head, sde)
    grids: dict[str, list] = {}
    for v in rows:
        grids.setdefault(v["model"], []).append([v["steps"], max(1, v["head_steps"]), v["head_solver"]])
    mode = {
        "data_specs": {data: spec}, "datasets": (data,), "seeds": size["seeds"],
        "steps": {data: size["budget"] or scale * PAPER_BUDGET[data]}, "n_eval": {data: size["n_eval"]},
        "fm_steps": FM_STEPS, "dtm": [SAMPLER], "ar_T": (), "ar_head_steps": (), "time_repeats": 0,
        "equal_compute": True, "row_metrics": IMAGE_METRICS, "target_min": size["target_min"],
        "models": models, "grids": grids, "variants": rows, "head": head,
        "curve": {"points": size["points"], "n": {data: size["curve_n"]}, "fm": FM_STEPS[0], "dtm": SAMPLER,
                  "models": {m["name"]: m["method"] for m in models if m["method"] in ("fm", "dtm")}},
        "part": part, "title": TITLES[part], "verdict": "causal" if part == "causal" else "dtm",
    }  # fmt: skip
    if part == "mnist":  # sample grids of seed 0: FM 128 (logit-normal t) and the recipe's DTM 16x4
        mode["grid"] = {"seed": 0, "per_class": 8, "configs": (("fm-logit", FM_STEPS[0], 1),
                                                               ("dtm-all", *SAMPLER, sde))}  # fmt: skip
    return mode


def mode_name_of(quick: bool, scale: int = SCALE, part: str = "levers") -> str:
    """The record's name: quick, full, or full_x<scale> for another budget (a record and run folder of its own);
    a follow-up part's name leads (mnist, mnist_quick, causal_full_x2)."""
    size = "quick" if quick else "full" if scale == SCALE else f"full_x{scale}"
    if part == "levers":
        return size
    return part if size == "full" else f"{part}_{size}"


def root_name_of(quick: bool, scale: int = SCALE, part: str = "levers") -> str:
    """The run folder's name under runs/bench: the causal part trains in the levers' folder (reusing its FM
    runs); the MNIST part has its own."""
    return STEM + suffix_of(mode_name_of(quick, scale, "levers" if part == "causal" else part))


def suffix_of(mode_name: str) -> str:
    return "" if mode_name == "full" else f"_{mode_name}"


def record_path(out: Path, mode_name: str) -> Path:
    return out / f"{STEM}{suffix_of(mode_name)}.json"


def load_record(path: Path, mode_name: str, settings: dict, fresh: bool = False) -> tuple[list, list, dict]:
    """Rows, invocation history and extras (curves, floors, calibration) of an earlier record of this mode made
    with these settings; nothing for a new record (--fresh, none yet, or other settings)."""
    empty: tuple[list, list, dict] = ([], [], {k: {} for k in EXTRAS})
    if fresh or not path.is_file():
        return empty
    rec = json.loads(path.read_text(encoding="utf-8"))
    if rec.get("mode") != mode_name or rec.get("settings") != settings:
        print(f"{path.name} was made with other settings: starting a new record (finished runs are reused)",
              flush=True)  # fmt: skip
        return empty
    return rec["rows"], rec.get("runs", []), {k: rec.get(k, {}) for k in EXTRAS}


def run_ablation(
    out: Path,
    root: Path,
    mode: dict,
    mode_name: str,
    seeds=None,
    jobs: int = 2,
    fresh: bool = False,
    note: str = "",
    command: str = "",
    report_only: bool = False,
    estimate_only: bool = False,
) -> None:
    """One resumable invocation: the cells (digits, seed, model) that are neither in the record nor finished in
    their run folder under `root` are calibrated, trained at equal compute and evaluated; the page, JSON and plot
    in `out` are rewritten after every (data, seed). estimate_only prints the equal-compute steps and the time
    estimate of the cells to run (calibrating them, stored under root) and stops; report_only rewrites the
    page."""
    seeds = tuple(seeds) if seeds else mode["seeds"]
    out.mkdir(parents=True, exist_ok=True)
    t0, load = time.time(), os.getloadavg()[0]
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    path = record_path(out, mode_name)
    head = mode["head"]
    data = mode["datasets"][0]
    print(f"{mode_name}: {data}, FM budget {mode['steps'][data]} steps; the head lever's head ({head['depth']} blocks "
          f"of width {head['width']}) has {100 * head['share']:.2f} % of the backbone's parameters (the preset's "
          f"{head['preset_depth']} x {head['preset_width']}: {100 * head['preset_share']:.2f} %)", flush=True)  # fmt: skip
    rows, history, extras = load_record(path, mode_name, cell_settings(mode, data), fresh)
    wanted = {(data, s): models_for(mode) for s in seeds}
    rows, todo = runner.split_todo(mode, root, wanted, rows, extras)
    if estimate_only:
        if todo:
            runner.prepare_equal_compute(mode, root, todo, extras, jobs, load, measure_floors=False)
        return
    if report_only or not todo:
        runner.restore_extras(mode, root, rows, extras)
        write_page(path, mode_name, mode, rows, history, extras, root)
        return
    runner.prepare_classifiers(mode, todo)
    steps = runner.prepare_equal_compute(mode, root, todo, extras, jobs, load)
    entry = {"command": command, "date": stamp, "jobs": jobs, "cpus": os.cpu_count(), "load_start": load,
             "note": note, "cells": 0}  # fmt: skip
    for res in run_plan(root, todo, mode, jobs, {}, stamp, steps):
        rows = merge_rows(rows, res)
        cells = list(cells_of(res))
        runner.add_curves(extras, root, cells)
        entry.update(cells=entry["cells"] + len(cells), seconds=time.time() - t0, load_end=os.getloadavg()[0])
        write_page(path, mode_name, mode, rows, history + [entry], extras, root)
    print(f"finished in {time.time() - t0:.0f} s", flush=True)

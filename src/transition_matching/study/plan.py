"""The plan of the quality-vs-NFE study: data sets, modes, the models of each cell, and the stored results.

A cell is one (data set, seed, model); its rows are one per sampling configuration (steps, head steps).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from transition_matching.config import load_preset

STUDY = "tm_quality_vs_nfe"  # the stem of the result files and of the default run folder
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
IMAGE_DATA = ("digits", "mnist14", "mnist")
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

# ----------------------------------------------------------------------------------------- the paper's regime


def paper_train(preset: str) -> dict:
    """The training settings of a *-paper preset that the study shares between methods (all but the method, the
    data set and the steps, which the study sets)."""
    return {k: v for k, v in load_preset(preset).items() if k not in ("method", "data", "steps")}


PAPER_PRESETS = {"checkerboard": "dtm-2d-paper", "8gaussians": "dtm-2d-paper", "digits": "dtm-digits-paper",
                 "mnist": "dtm-mnist-paper"}  # fmt: skip
IMAGE_METRICS = ("cfid", "indep_acc", "class_acc")
DATA_PAPER = {  # a backbone pass costs >= 20x a head step per token (configs/tm/*-paper.toml)
    d: {"train": paper_train(p), "cfg": 1.0 if "2d" in p else 2.0,
        "metrics": ("w2", "energy") if "2d" in p else IMAGE_METRICS}
    for d, p in PAPER_PRESETS.items()
}  # fmt: skip
PAPER_COMMON = {
    "data_specs": DATA_PAPER, "datasets": ("checkerboard", "8gaussians", "digits", "mnist"),
    "only": {"mnist": {"seeds": (0,), "methods": ("fm", "dtm")}},  # the image showcase: one seed, FM and DTM
    "methods": ("fm", "dtm"),  # the default; ARTM/FHTM (as in the full study) with --methods fm dtm artm fhtm
    "eqtime": False, "equal_compute": True, "ar_seeds": 1,
    "row_metrics": ("w2", "energy", "cfid", "class_acc", "indep_acc"), "time_repeats": 0,
    "grid": {"seed": 0, "per_class": 8, "configs": (("fm", 128, 1), ("dtm", 16, 4))},
}  # fmt: skip
MODES["paper"] = {
    **PAPER_COMMON, "seeds": (0, 1, 2), "target_min": 60,
    "steps": {d: load_preset(p)["steps"] for d, p in PAPER_PRESETS.items()},  # FM steps: the compute budget
    "n_eval": {"checkerboard": 2000, "8gaussians": 2000, "digits": 600, "mnist": 200},
    "fm_steps": (4, 8, 16, 32, 64, 128, 256), "dtm": [(T, S) for T in (4, 8, 16, 32) for S in (1, 4, 16)],
    "ar_T": (1, 2, 3), "ar_head_steps": (4, 16),
    "curve": {"points": 8, "n": {"checkerboard": 1000, "8gaussians": 1000, "digits": 300, "mnist": 100},
              "fm": 16, "dtm": (8, 4)},
}  # fmt: skip
LONG_SCALE = 4  # --paper --long: every model trains 4x the paper mode's compute
MODES["paper_long"] = {
    **MODES["paper"], "datasets": ("checkerboard", "digits"), "target_min": 180,
    "steps": {d: LONG_SCALE * n for d, n in MODES["paper"]["steps"].items()},
}  # fmt: skip
MODES["paper_quick"] = {
    **PAPER_COMMON, "seeds": (0,), "target_min": 10,
    "steps": {"checkerboard": 250, "8gaussians": 250, "digits": 150, "mnist": 80},
    "n_eval": {"checkerboard": 1000, "8gaussians": 1000, "digits": 400, "mnist": 200},
    "fm_steps": (4, 16, 64, 256), "dtm": [(T, S) for T in (4, 16) for S in (1, 4)],
    "ar_T": (1, 3), "ar_head_steps": (4,),
    "curve": {"points": 3, "n": {"checkerboard": 300, "8gaussians": 300, "digits": 200, "mnist": 100},
              "fm": 16, "dtm": (8, 4)},
}  # fmt: skip


def specs_of(mode: dict) -> dict:
    """The data sets a mode knows: name -> training settings, guidance scale, reported metrics."""
    return mode.get("data_specs", DATA)


def default_datasets(mode: dict) -> tuple[str, ...]:
    return tuple(mode.get("datasets", DEFAULT_DATA))


def n_eval_of(mode: dict, data: str) -> int:
    """Samples per evaluated configuration (one number, or one per data set)."""
    n = mode["n_eval"]
    return n[data] if isinstance(n, dict) else n


def only_of(mode: dict, data: str) -> dict:
    """A mode's restrictions of one data set ({"seeds": ..., "methods": ...}, either may be absent)."""
    return mode.get("only", {}).get(data, {})


def suffix_of(mode_name: str) -> str:
    """The file-name suffix of a mode: none for the full study, else _<mode>."""
    return "" if mode_name == "full" else f"_{mode_name}"


def mode_of(mode: str | dict) -> dict:
    """A mode given by its name in MODES, or as its dict (a mode built at run time, such as the DTM ablation's,
    which worker processes receive whole)."""
    return MODES[mode] if isinstance(mode, str) else mode


def models_for(mode: dict) -> list[dict]:
    """The models trained per data set and seed (name, method and method settings); fm-eqtime not included. A
    mode with its own list of models ("models") trains those."""
    if "models" in mode:
        return [dict(sp) for sp in mode["models"]]
    out = [{"name": "fm", "method": "fm"}, {"name": "dtm", "method": "dtm"}]
    for m in ("artm", "fhtm"):
        for T in mode["ar_T"]:
            out.append({"name": f"{m}{T}", "method": m, **({"schedule": T3} if T == 3 else {"T": T})})
    return out


EQTIME = {"name": "fm-eqtime", "method": "fm"}


def method_of(name: str) -> str:
    """fm, fm-eqtime, dtm, artm or fhtm from a model name such as artm3."""
    return name if name in ("fm", "fm-eqtime", "dtm") else name.rstrip("0123456789")


def sampling_grid(mode: dict, name: str, method: str, T: int) -> list[tuple]:
    """(steps, head steps) evaluated for one model; a mode's own per-model grids ("grids") may add a head solver
    as a third entry, (steps, head steps, head solver)."""
    if name in mode.get("grids", {}):
        return [tuple(g) for g in mode["grids"][name]]
    if method == "fm":
        return [(s, 1) for s in mode["fm_steps"]]
    if method == "dtm":
        return list(mode["dtm"])
    return [(T, S) for S in mode["ar_head_steps"]]


def head_solver(solver: list) -> dict:
    """{"head_solver": name} for a sampling-grid entry that names one (its optional last part), else {}."""
    return {"head_solver": solver[0]} if solver else {}


def run_path(root: Path, data: str, seed: int, name: str) -> Path:
    return root / data / f"seed{seed}" / name


def canon(x):
    """A JSON round trip: tuples become lists, so that settings compare equal with what a JSON file holds."""
    return json.loads(json.dumps(x))


def cell_settings(mode: dict, data: str) -> dict:
    """Everything that decides the rows of a cell of this data set (compared before a stored cell is reused)."""
    keys = ("n_eval", "fm_steps", "dtm", "ar_head_steps", "time_repeats")
    out = {"data": specs_of(mode)[data], "steps": mode["steps"][data], **{k: mode[k] for k in keys}}
    out["n_eval"] = n_eval_of(mode, data)
    optional = ("equal_compute", "curve", "grid", "row_metrics", "models", "grids")
    out.update({k: mode[k] for k in optional if k in mode})
    return canon(out)


def data_settings(mode: dict, rows: list[dict]) -> dict:
    """cell_settings of every data set with rows (stored in the JSON)."""
    return {d: cell_settings(mode, d) for d in specs_of(mode) if any(r["data"] == d for r in rows)}


def plan_cells(
    datasets, seeds, mode: dict, ar_seeds: int | None = None, methods=METHODS, eqtime: bool = True
) -> dict[tuple[str, int], list[dict]]:
    """The cells wanted: (data, seed) -> model specs; ARTM/FHTM only for the first `ar_seeds` seeds (the mode's
    own default, else all); a mode's per-data-set restrictions (`only`) and its `eqtime` switch apply."""
    seeds = list(seeds)
    ar_seeds = mode.get("ar_seeds", len(seeds)) if ar_seeds is None else ar_seeds
    out = {}
    for d in datasets:
        only = only_of(mode, d)
        for s in seeds:
            if s not in only.get("seeds", seeds):
                continue
            allowed = [m for m in methods if m in only.get("methods", methods)]
            specs = [sp for sp in models_for(mode) if sp["method"] in allowed]
            specs = [sp for sp in specs if sp["method"] in ("fm", "dtm") or seeds.index(s) < ar_seeds]
            if eqtime and mode.get("eqtime", True) and "fm-eqtime" in allowed:
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
    return out / f"{STUDY}{suffix}.json"


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
        if d not in specs_of(mode):
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


def load_extras(path: Path, mode_name: str, rows: list[dict]) -> dict:
    """The curves, floors and calibrations an earlier JSON of this mode holds, for the data sets still in rows."""
    if not path.is_file():
        return {}
    prev = json.loads(path.read_text(encoding="utf-8"))
    if prev.get("mode") != mode_name:
        return {}
    kept = {r["data"] for r in rows}
    return {k: {d: v for d, v in prev.get(k, {}).items() if d in kept} for k in EXTRAS}


EXTRAS = ("curves", "floors", "calibration")  # per data set, beside the rows in the JSON


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

"""Equal training compute and the time estimate of a study invocation.

Calibration (once per data set and run folder, stored in <root>/<data>/calibration.json and reused by later
invocations so that a resumed study trains the same steps): the seconds of one optimizer step of every model,
timed interleaved (fastest of a few rounds, one thread), and the cost of a backbone pass against a head step
(transition_matching.cost). Equal compute: every model trains for budget x (FM's seconds per step) / (its
seconds per step), where the budget is the mode's FM steps.
"""

from __future__ import annotations

import time
from pathlib import Path

from transition_matching.study.plan import canon, models_for, n_eval_of, sampling_grid, specs_of

CALIBRATION = "calibration.json"


def calibration_path(root: Path, data: str) -> Path:
    return root / data / CALIBRATION


def calibrate(root: Path, data: str, mode: dict, names: list[str], rounds: int = 6) -> dict:
    """The stored calibration of `data` under root, with any of `names` it lacks measured now (and stored); a
    calibration made for other training settings of the data set is replaced, and a model timed with other
    settings of its own (recorded per model in "models") is timed again.

    Seconds per step: the fastest of `rounds` interleaved timings of 2 steps of every model. FM is timed in every
    session; models added to an earlier calibration are scaled by FM's stored / current seconds, so that the
    ratios to FM, which decide the equal-compute steps, come from one session. FLOPs per step are counted too."""
    import torch

    from runkit.io import atomic_write_json, read_json
    from transition_matching.config import make_config, resolve
    from transition_matching.cost import config_pass_cost, count_flops, fastest
    from transition_matching.study.workers import model_settings
    from transition_matching.trainer import load_training_data, step_runner

    path = calibration_path(root, data)
    train = canon(specs_of(mode)[data]["train"])
    cal = read_json(path) if path.is_file() else {}
    specs = {sp["name"]: sp for sp in models_for(mode)}
    settings = {n: model_settings(mode, data, specs[n]) for n in dict.fromkeys(["fm", *names])}
    stored = cal.get("models", {})  # the settings each model was timed with (older calibrations lack them)
    if cal.get("train") != train or stored.get("fm", settings["fm"]) != settings["fm"]:  # other networks
        cal = {"train": train, "step_seconds": {}}
    for n in names:  # a model whose own settings changed since it was timed is timed again
        if stored.get(n, settings[n]) != settings[n]:
            cal["step_seconds"].pop(n, None)
    missing = [n for n in names if n not in cal["step_seconds"]]
    if not missing and "pass" in cal:
        return cal
    torch.set_num_threads(1)
    ds = load_training_data(make_config(data=data, seed=0, **model_settings(mode, data, specs["fm"])))

    def config(name: str):
        return resolve(make_config(data=data, seed=0, **model_settings(mode, data, specs[name])), ds.n_tokens)

    if missing:
        timed = list(dict.fromkeys(["fm", *missing]))
        runners = {n: step_runner(config(n), ds) for n in timed}
        flops = {
            n: count_flops(r, r.model) for n, r in runners.items() if n in missing
        }  # also a warm-up step
        cal.setdefault("step_flops", {}).update(flops)
        pairs = fastest([lambda r=r: (r(), r()) for r in runners.values()], rounds)
        secs = {n: t / 2 for n, t in zip(timed, pairs, strict=True)}  # seconds per step
        scale = cal["step_seconds"]["fm"] / secs["fm"] if "fm" in cal["step_seconds"] else 1.0
        cal["step_seconds"].update({n: scale * secs[n] for n in missing})
        cal["models"] = {**cal.get("models", {}), **{n: settings[n] for n in timed}}
    if "pass" not in cal:
        plain = {**specs_of(mode)[data]["train"], "method": "dtm"}  # the preset's DTM, in every mode's regime
        cal["pass"] = config_pass_cost(
            resolve(make_config(data=data, seed=0, **plain), ds.n_tokens), ds
        ).as_dict()
        cal["n_tokens"] = ds.n_tokens
    cal["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, cal)
    return cal


def equal_compute_steps(budget: int, step_seconds: dict, name: str) -> int:
    """Steps of `name` that cost what `budget` FM steps cost (rounded to 10, at least 10)."""
    if name == "fm":
        return budget
    return max(10, int(round(budget * step_seconds["fm"] / step_seconds[name] / 10)) * 10)


def training_steps(mode: dict, todo: dict, calibrations: dict) -> dict:
    """(data, model name) -> training steps of the models in todo ((data, seed) -> specs)."""
    out = {}
    for (d, _), specs in todo.items():
        for sp in specs:
            cal = calibrations.get(d)
            budget = mode["steps"][d]
            out[(d, sp["name"])] = (
                equal_compute_steps(budget, cal["step_seconds"], sp["name"]) if cal else budget
            )
    return out


# ----------------------------------------------------------------------------------------- the estimate

METRIC_SECONDS = {"toy": 2.5, "image": 0.3}  # metric overhead per evaluated configuration at n = 2,000 (toys)


def _sample_seconds(cal: dict, backbone_evals: int, head_evals: int, n: int, tokens_per_pass: int) -> float:
    p = cal["pass"]
    bb = (p["backbone_seconds"] or 0.0) * tokens_per_pass
    hd = (p["head_seconds"] or 0.0) * cal["n_tokens"]
    return n * (backbone_evals * bb + head_evals * hd)


def cell_estimate(mode: dict, data: str, spec: dict, steps: int, cal: dict) -> dict:
    """Seconds one model costs: training (steps x seconds per step), its curve, its sampling grid and metrics."""
    from transition_matching.data import TOYS
    from transition_matching.study.quality import curve_spec

    n_tok = cal["n_tokens"]
    rows = 2 if specs_of(mode)[data]["cfg"] != 1.0 else 1  # guidance doubles the batch ([conditional; null])
    train = steps * cal["step_seconds"].get(spec["name"], cal["step_seconds"]["fm"])
    metric = METRIC_SECONDS["toy" if data in TOYS else "image"]
    curve, sample, metrics = 0.0, 0.0, 0.0
    c = curve_spec(mode, data, spec["name"], steps)
    if c:
        points = -(-steps // c["every"])
        he = c["steps"] * c["head_steps"] if spec["method"] == "dtm" else 0
        curve = points * (
            _sample_seconds(cal, c["steps"], he, rows * c["n"], n_tok) + metric * (c["n"] / 2000) ** 2
        )
    n = rows * n_eval_of(mode, data)
    T = spec.get("T", 3 if "schedule" in spec else 1)
    for steps_k, S, *_ in sampling_grid(mode, spec["name"], spec["method"], T):  # a head solver costs alike
        if spec["method"] == "fm":
            sample += _sample_seconds(cal, steps_k, 0, n, n_tok)
        elif spec["method"] == "dtm":
            sample += _sample_seconds(cal, steps_k, steps_k * S, n, n_tok)
        else:  # ARTM/FHTM: T x n passes of one token (KV cache), T x n head ODEs of one token each
            sample += _sample_seconds(cal, steps_k * n_tok, steps_k * S, n, 1)
        metrics += metric * (n / rows / 2000) ** 2 if data in TOYS else metric
    return {"train": train, "curve": curve, "sample": sample, "metrics": metrics}


def estimate(
    mode: dict, todo: dict, steps: dict, calibrations: dict, jobs: int, trained: frozenset = frozenset()
) -> dict:
    """Worker seconds by kind over the cells in todo and the wall-time estimate on `jobs` workers: the larger of
    the total over the workers and the longest single (data, seed) chain. Cells (data, seed, name) in `trained`
    have a finished run that training reuses: only their evaluation counts."""
    kinds = {"train": 0.0, "curve": 0.0, "sample": 0.0, "metrics": 0.0}
    longest = 0.0
    for (d, s), specs in todo.items():
        chain_train, chain_eval = [], 0.0
        for sp in specs:
            e = cell_estimate(mode, d, sp, steps[(d, sp["name"])], calibrations[d])
            if (d, s, sp["name"]) in trained:
                e = {**e, "train": 0.0, "curve": 0.0}
            for k, v in e.items():
                kinds[k] += v
            chain_train.append(e["train"] + e["curve"])
            chain_eval += e["sample"] + e["metrics"]
        longest = max(longest, max(chain_train, default=0.0) + chain_eval)
    total = sum(kinds.values())
    return {**kinds, "total": total, "wall": max(total / max(1, jobs), longest), "jobs": jobs}


def load_factor(load: float, jobs: int, cpus: int) -> float:
    """How much slower the workers run than the calibration when `load` other runnable processes share the
    `cpus` cores with `jobs` workers (1 on an idle machine with a core per worker)."""
    return max(1.0, (load + jobs) / max(1, cpus))


def describe_estimate(est: dict, target_min: float | None = None, load: float = 0.0, cpus: int = 2) -> str:
    """One paragraph for the console: the estimate with a core per worker (the calibration's speed), the
    verdict against the target, and the estimate at the load average of other processes when it is higher."""
    parts = ", ".join(f"{k} {est[k] / 60:.1f}" for k in ("train", "curve", "sample", "metrics"))
    jobs = est["jobs"]
    line = (f"estimate: {est['total'] / 60:.1f} worker-minutes ({parts}) -> about {est['wall'] / 60:.0f} min on "
            f"{jobs} worker{'s' if jobs > 1 else ''} of 1 thread with a core each")  # fmt: skip
    if target_min is not None:
        verdict = "fits" if est["wall"] <= 60 * target_min else "does NOT fit"
        line += f"; {verdict} the {target_min:.0f}-minute target"
    factor = load_factor(load, jobs, cpus)
    if factor > 1.05:
        line += (f". Other processes keep {load:.1f} cores busy (1-min load average before this run) on {cpus}: "
                 f"expect about {factor * est['wall'] / 60:.0f} min")  # fmt: skip
    return line


def describe_calibration(data: str, cal: dict, steps: dict) -> str:
    """The cost regime and the equal-compute steps of one data set, for the console."""
    from transition_matching.cost import PassCost

    fields = {k: v for k, v in cal["pass"].items() if k in PassCost.__dataclass_fields__}
    names = sorted({n for (d, n) in steps if d == data})
    per = ", ".join(f"{n} {steps[(data, n)]} steps x {1000 * cal['step_seconds'][n]:.0f} ms" for n in names)
    return f"{data}: {PassCost(**fields).describe()}\n{data}: equal compute: {per}"

"""What the study measures beside the sampling grid: quality against training steps while FM and DTM train
(convergence), the data-vs-data floor of every metric, and class-conditional sample grids of the image sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from transition_matching.study.plan import head_solver, n_eval_of, run_path, specs_of

CURVE_METHODS = ("fm", "dtm")  # the models with curves (name = method), unless the curve names its own
FLAT = 0.05  # "the curve has flattened": the last quarter of training changed the metric by less than 5 %


def curve_spec(mode: dict, data: str, name: str, steps: int) -> dict | None:
    """How a model's quality-vs-steps curve is measured (None: no curve): every `every` steps, `n` samples with
    a fixed sampler (FM Euler steps; DTM T x S), the data set's first metric. The curve's "models" (name ->
    method) say which models get one; by default FM and DTM."""
    curve = mode.get("curve")
    models = curve.get("models", {m: m for m in CURVE_METHODS}) if curve else {}
    if name not in models:
        return None
    every = max(1, -(-steps // curve["points"]))
    sampler = (curve["fm"], 1) if models[name] == "fm" else tuple(curve["dtm"])
    primary = specs_of(mode)[data]["metrics"][0]
    return {"every": every, "n": curve["n"][data], "steps": sampler[0], "head_steps": sampler[1],
            "metrics": (primary, "energy" if primary == "w2" else "w2"), "cfg": specs_of(mode)[data]["cfg"]}  # fmt: skip


class CurveRecorder:
    """The trainer's on_evaluate hook: the EMA model's quality at this step, from curve["n"] samples."""

    def __init__(self, run, cfg, data, curve: dict, seed: int):
        self.run, self.cfg, self.data, self.curve, self.seed = run, cfg, data, curve, seed
        self.points: list[dict] = []  # {"step": k, metric: value, ...}

    def __call__(self, step: int, method, ema) -> None:
        from transition_matching.evaluation import evaluate
        from transition_matching.runs import LoadedRun, sample_options

        c = self.curve
        loaded = LoadedRun(self.run, self.cfg, self.data, method, ema, step)
        opts = sample_options(loaded, steps=c["steps"], head_steps=c["head_steps"], cfg=c["cfg"])
        res = evaluate(loaded, c["n"], opts, seed=3000 + self.seed, metrics=tuple(c["metrics"]))
        self.points.append({"step": step, **{k: res[k] for k in c["metrics"]}})


def curve_label(curve: dict, method: str) -> str:
    return f"FM {curve['steps']}" if method == "fm" else f"DTM {curve['steps']}x{curve['head_steps']}"


def read_curves(root: Path, cells) -> dict:
    """{data: {"<seed>/<model>": curve record}} from the run folders of the given (data, seed, model) cells."""
    from runkit.io import read_json

    out: dict = {}
    for d, s, name in cells:
        path = run_path(root, d, s, name) / "bench_train.json"
        if path.is_file():
            rec = read_json(path)
            if rec.get("curve"):
                out.setdefault(d, {})[f"{s}/{name}"] = {"spec": rec["curve_spec"], "points": rec["curve"],
                                                        "train_steps": rec["steps"]}  # fmt: skip
    return out


def flatness(points: list[tuple[int, float]]) -> float | None:
    """Relative change of a metric over the last quarter of training, from (step, value) points: (last - value
    at the last point <= 75 % of the steps) / |that value|; None with fewer than 2 points."""
    if len(points) < 2:
        return None
    end = points[-1][0]
    before = [p for p in points[:-1] if p[0] <= 0.75 * end] or points[:1]
    ref = before[-1][1]
    return (points[-1][1] - ref) / abs(ref) if ref else None


# ----------------------------------------------------------------------------------------- floors


def floors(mode: dict, data_name: str) -> dict:
    """The metrics of data against data, with the sample count of the study: for toys a fresh draw of n points
    against the reference draw the samples are compared with; for images n training images against the training
    set (cFID) and their labels (accuracies)."""
    import torch

    from transition_matching.classifier import classifier_metrics
    from transition_matching.config import make_config
    from transition_matching.data import TOYS, reference_set, sample_toy
    from transition_matching.metrics import distribution_metrics
    from transition_matching.trainer import load_training_data

    spec, n = specs_of(mode)[data_name], n_eval_of(mode, data_name)
    data = load_training_data(make_config(data=data_name, **spec["train"]))
    names = tuple(mode.get("row_metrics", spec["metrics"]))
    out = {"n": n}
    if data_name in TOYS:
        ref = reference_set(data, data_name, n)  # what evaluate() compares samples with
        fresh = sample_toy(data_name, n, np.random.default_rng(54321))
        out.update(distribution_metrics(fresh, ref, names))
        return out
    idx = torch.from_numpy(np.random.default_rng(0).choice(len(data.X), min(n, len(data.X)), replace=False))
    out.update(classifier_metrics(data, data.X[idx], data.labels[idx], names=names))
    return out


# ----------------------------------------------------------------------------------------- sample grids


def grid_file(root: Path, data: str, seed: int, name: str, steps: int, S: int, solver: str = "euler") -> Path:
    tag = "" if solver == "euler" else f"_{solver.replace(':', '-')}"
    return run_path(root, data, seed, name) / f"grid_{steps}x{S}{tag}.npy"


def grid_title(name: str, steps: int, S: int, solver: str = "euler") -> str:
    """FM 128, DTM 16x4, or the model's name with its sampler (dtm-all 16x4 sde)."""
    if name in ("fm", "dtm"):
        return f"{'FM' if name == 'fm' else 'DTM'} {steps}" + ("" if name == "fm" else f"x{S}")
    sampler = f"{steps}" if name.startswith("fm") else f"{steps}x{S}"
    return f"{name} {sampler}" + ("" if solver == "euler" else f" {solver}")


def draw_grids(loaded: dict, root: Path, data: str, seed: int, grid: dict, cfg_w: float) -> None:
    """Class-conditional samples (per_class of every class, class-major) of the grid's configurations of the
    loaded models, as raw images in the run folders."""
    import torch

    from transition_matching.runs import draw_samples, sample_options

    for name, steps, S, *solver in grid["configs"]:  # an optional fourth entry: the head solver
        lr = loaded.get(name)
        if lr is None:
            continue
        k = lr.data.num_classes
        labels = torch.arange(k).repeat_interleave(grid["per_class"])
        opts = sample_options(lr, steps=steps, head_steps=S, cfg=cfg_w, **head_solver(solver))
        raw = draw_samples(lr, len(labels), opts, labels, seed=7000 + seed).raw
        np.save(grid_file(root, data, seed, name, steps, S, *solver), raw)


def render_grids(root: Path, path: Path, data_name: str, mode: dict) -> bool:
    """One picture of the training images and of every grid configuration found in the run folders, side by
    side (a row per class); False when no grid exists yet."""
    from transition_matching.config import make_config
    from transition_matching.plots import _plt, _save, tile
    from transition_matching.trainer import load_training_data

    grid = mode.get("grid")
    if not grid:
        return False
    found = [(grid_title(*c), grid_file(root, data_name, grid["seed"], *c)) for c in grid["configs"]]
    found = [(title, f) for title, f in found if f.is_file()]
    if not found:
        return False
    data = load_training_data(make_config(data=data_name, **specs_of(mode)[data_name]["train"]))
    k, per = data.num_classes, grid["per_class"]
    real = data.raw()[np.concatenate([np.flatnonzero(data.labels.numpy() == c)[:per] for c in range(k)])]
    panels = [("training data", real)] + [(title, np.load(f)) for title, f in found]
    lo, hi = float(data.scaler.decode(np.array(-1.0))), float(data.scaler.decode(np.array(1.0)))
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6))
    for ax, (title, images) in zip(np.atleast_1d(axes), panels, strict=True):
        big = np.clip(tile(images, k, fill=hi), lo, hi)
        ax.imshow(big[..., 0], cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    _save(fig, path)
    return True

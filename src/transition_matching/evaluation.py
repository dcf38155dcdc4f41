"""Evaluate a run: draw samples, compare them with the data, write eval.json."""

from __future__ import annotations

import numpy as np
from torch import Tensor

from runkit.io import atomic_write_json
from transition_matching.data import TOYS, Dataset, reference_set
from transition_matching.methods import SampleOptions
from transition_matching.metrics import distribution_metrics, memorisation
from transition_matching.runs import LoadedRun, default_labels, draw_samples


def model_space(data: Dataset, tokens: Tensor) -> np.ndarray:
    """Samples as flat points (N, D) in the scaled space the model sees (for toys, the raw points)."""
    return data.scaler.encode(data.flat_raw(tokens))


def evaluate(
    loaded: LoadedRun,
    n: int,
    opts: SampleOptions,
    seed: int = 0,
    label: int | None = None,
    metrics: tuple[str, ...] | None = None,
) -> dict:
    """Metrics of n samples: W2, sliced W2, energy, MMD, memorisation and, for labelled images, cFID/accuracy
    (and the independent classifier's accuracy); `metrics` restricts them to the named ones (memorisation:
    "nn_ratio")."""
    data, cfg = loaded.data, loaded.config
    labels = default_labels(loaded, n, label)
    samples = draw_samples(loaded, n, opts, labels, seed)
    s = model_space(data, samples.tokens)
    train = model_space(data, data.X)
    ref = data.scaler.encode(reference_set(data, cfg.data, min(n, 5000)))  # toys: fresh draws; else the data
    held_out = ref if cfg.data in TOYS else None  # the training set itself is no held-out set
    out = {
        "method": cfg.method,
        "data": cfg.data,
        "train_step": loaded.step,
        "n": n,
        "steps": opts.steps,
        "head_steps": opts.head_steps,
        "cfg": opts.cfg,
        "backbone_evals": samples.backbone_evals,
        "head_evals": samples.head_evals,
        "seconds": samples.seconds,
        "seconds_per_1000": samples.seconds * 1000 / n,
    }
    out.update(distribution_metrics(s, ref, metrics))
    if metrics is None or "nn_ratio" in metrics:
        out.update(memorisation(s, train, held_out))
    if data.is_image and data.labels is not None:
        from transition_matching.classifier import classifier_metrics

        out.update(classifier_metrics(data, samples.tokens, labels, names=metrics))
    return out


def write_eval(loaded: LoadedRun, results: dict) -> None:
    """Store results as eval.json in the run folder."""
    atomic_write_json(loaded.run.path / "eval.json", results)

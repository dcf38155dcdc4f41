"""A small image classifier trained once per data set (cached) for classifier-FID and class accuracy."""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from runkit.checkpoint import load_checkpoint, save_checkpoint
from runkit.errors import CheckpointError
from transition_matching.data import Dataset


class SmallClassifier(nn.Module):
    """MLP on flattened images in [-1, 1]; `features` is its penultimate layer."""

    def __init__(self, in_dim: int, num_classes: int, width: int = 256, feat: int = 128):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(in_dim, width), nn.ReLU(), nn.Linear(width, feat), nn.ReLU())
        self.out = nn.Linear(feat, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.body(x))


def cache_dir() -> Path:
    """Where classifiers are cached: $TM_CACHE_DIR or ~/.cache/transition_matching."""
    return Path(os.environ.get("TM_CACHE_DIR") or Path.home() / ".cache" / "transition_matching")


def classifier_input(data: Dataset, tokens: Tensor) -> Tensor:
    """Tokens in model space -> flattened images in model space (N, H*W*C)."""
    raw = data.flat_raw(tokens)
    return torch.from_numpy(data.scaler.encode(raw).astype(np.float32))


def _key(data: Dataset) -> str:
    h = hashlib.sha256(data.X.numpy().tobytes())
    h.update(data.labels.numpy().tobytes())
    return f"{data.name}-{h.hexdigest()[:12]}"


@torch.enable_grad()
def train_classifier(data: Dataset, epochs: int = 30, seed: int = 0) -> SmallClassifier:
    """Fit the classifier on the whole labelled training set."""
    x, y = classifier_input(data, data.X), data.labels
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = SmallClassifier(x.shape[1], data.num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(128):
            noisy = x[idx] + 0.1 * torch.randn(x[idx].shape, generator=gen)  # robustness to sample noise
            loss = F.cross_entropy(model(noisy), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def get_classifier(data: Dataset, directory: Path | None = None) -> SmallClassifier:
    """The cached classifier of this data set, trained on first use."""
    path = (directory or cache_dir()) / _key(data)
    model = SmallClassifier(classifier_input(data, data.X[:1]).shape[1], data.num_classes)
    try:
        model.load_state_dict(load_checkpoint(path).state["model"])
        return model.eval()
    except CheckpointError:
        pass
    model = train_classifier(data)
    save_checkpoint(path, {"model": model.state_dict()})
    return model


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    """Frechet distance between Gaussian fits of two feature sets (N, k)."""
    from scipy import linalg

    mu1, mu2 = f1.mean(0), f2.mean(0)
    eps = 1e-6 * np.eye(f1.shape[1])  # dead ReLU features make the covariances singular
    s1, s2 = np.cov(f1, rowvar=False) + eps, np.cov(f2, rowvar=False) + eps
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


@torch.no_grad()
def classifier_metrics(
    data: Dataset, tokens: Tensor, labels: Tensor | None, directory: Path | None = None
) -> dict:
    """Classifier-FID of samples against the training set and, with labels, the accuracy of conditional samples."""
    clf = get_classifier(data, directory)
    f_s = clf.features(classifier_input(data, tokens)).double().numpy()
    f_d = clf.features(classifier_input(data, data.X)).double().numpy()
    out = {"cfid": frechet_distance(f_s, f_d)}
    if labels is not None:
        pred = clf(classifier_input(data, tokens)).argmax(1)
        out["class_acc"] = float((pred == labels).float().mean())
    return out

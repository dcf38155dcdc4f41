"""Plots of a run: 2D scatter and density, image grids per class, trajectories X_0 -> X_T, the loss curve."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runkit.io import save_figure


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=90, bbox_inches="tight")
    _plt().close(fig)
    return path


def scatter_2d(samples: np.ndarray, reference: np.ndarray, path: Path, title: str = "") -> Path:
    """Samples beside reference data, two panels with shared limits."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(8, 4), sharex=True, sharey=True)
    for ax, pts, name in zip(axes, (reference, samples), ("data", "samples"), strict=True):
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5)
        ax.set_title(f"{name} {title}".strip())
        ax.set_aspect("equal")
    return _save(fig, path)


def density_2d(samples: np.ndarray, path: Path, bins: int = 100) -> Path:
    """A 2D histogram of samples."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.hist2d(samples[:, 0], samples[:, 1], bins=bins, cmap="viridis")
    ax.set_aspect("equal")
    ax.set_title("sample density")
    return _save(fig, path)


def trajectories_2d(traj: np.ndarray, path: Path, lines: int = 200) -> Path:
    """Paths X_0 -> X_T (steps+1, N, 2): grey lines, noise in blue, samples in red."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5))
    m = min(lines, traj.shape[1])
    ax.plot(traj[:, :m, 0], traj[:, :m, 1], color="grey", alpha=0.3, lw=0.6)
    ax.scatter(traj[0, :m, 0], traj[0, :m, 1], s=4, c="tab:blue", label="X_0")
    ax.scatter(traj[-1, :m, 0], traj[-1, :m, 1], s=4, c="tab:red", label="X_T")
    ax.legend(loc="upper right")
    ax.set_aspect("equal")
    return _save(fig, path)


def tile(images: np.ndarray, rows: int, pad: int = 1, fill: float = 0.0) -> np.ndarray:
    """Images (N, H, W, C) -> one array (rows*(H+pad), cols*(W+pad), C) in row-major order."""
    N, H, W, C = images.shape
    cols = int(np.ceil(N / rows))
    out = np.full((rows * (H + pad), cols * (W + pad), C), fill, dtype=np.float64)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        out[r * (H + pad) : r * (H + pad) + H, c * (W + pad) : c * (W + pad) + W] = img
    return out


def image_grid(
    images: np.ndarray, path: Path, rows: int, title: str = "", vmin: float = 0, vmax: float = 1
) -> Path:
    """Images (N, H, W, C) in a grid of `rows` rows (e.g. one row per class), drawn as one picture."""
    plt = _plt()
    big = np.clip(tile(images, rows, fill=vmax), vmin, vmax)
    cols = int(np.ceil(len(images) / rows))
    fig, ax = plt.subplots(figsize=(max(2.0, cols * 0.6), max(2.0, rows * 0.6)))
    ax.imshow(
        big[..., 0] if big.shape[-1] == 1 else (big - vmin) / (vmax - vmin), cmap="gray", vmin=vmin, vmax=vmax
    )
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=8)
    return _save(fig, path)


def loss_curve(rows: list[dict], path: Path) -> Path:
    """train/loss against step from metrics.jsonl rows."""
    plt = _plt()
    pts = [(r["step"], r["train/loss"]) for r in rows if isinstance(r.get("train/loss"), float)]
    fig, ax = plt.subplots(figsize=(5, 3))
    if pts:
        ax.plot(*zip(*pts, strict=True))
    ax.set_xlabel("step")
    ax.set_ylabel("train loss")
    ax.set_yscale("log")
    return _save(fig, path)

"""The gradient noise scale: how much a larger batch of the same turns would sharpen an update.

With per-turn gradient covariance S and mean gradient G, a batch of B turns has E|g_B|^2 = |G|^2 + tr(S) / B.
The noise scale B_noise = tr(S) / |G|^2 is the batch at which signal and noise weigh the same (McCandlish et al.
2018, "An empirical model of large-batch training"); `signal_share` is the signal's part of a batch gradient's
expected squared norm. `benchmarks/sft_gradient_noise.py` measures it for an SFT preset.
"""

from __future__ import annotations

import torch


def noise_scale(grads: torch.Tensor, small: int) -> dict[str, float]:
    """Estimates from K disjoint batch gradients (the rows of `grads`, each the mean over `small` turns).

    The rows' summed per-coordinate sample variance estimates tr(S) / small without bias, and
    |G|^2 = E|mean of the K rows|^2 - tr(S) / (K small)."""
    k = grads.shape[0]
    if grads.dim() != 2 or k < 2 or small < 1:
        raise ValueError("need a (K >= 2, P) matrix of batch gradients and small >= 1")
    g = grads.double()
    mean = g.mean(0)
    spread = float(((g - mean) ** 2).sum() / (k - 1))
    signal = float(mean.pow(2).sum()) - spread / k
    trace = spread * small
    return {"trace": trace, "signal": signal, "b_noise": trace / signal if signal > 0 else float("inf"),
            "small_sq": float(g.pow(2).sum(1).mean()), "mean_sq": float(mean.pow(2).sum())}  # fmt: skip


def signal_share(est: dict[str, float], batch: int) -> float:
    """|G|^2 / (|G|^2 + tr(S) / batch); 0 where the estimated signal is not positive."""
    if est["signal"] <= 0:
        return 0.0
    return est["signal"] / (est["signal"] + est["trace"] / batch)

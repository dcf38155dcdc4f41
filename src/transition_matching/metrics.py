"""Sample-quality metrics on raw points (N, D): exact W2, sliced W2, energy distance, MMD, memorisation."""

from __future__ import annotations

import numpy as np

from runkit.errors import UserError

MAX_EXACT = 5000


def _subsample(x: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    if len(x) <= n:
        return x
    return x[np.random.default_rng(seed).choice(len(x), n, replace=False)]


def w2(a: np.ndarray, b: np.ndarray) -> float:
    """Exact 2-Wasserstein distance between two empirical sets with POT (at most 5,000 points each)."""
    import ot

    if len(a) > MAX_EXACT or len(b) > MAX_EXACT:
        raise UserError(f"exact W2 takes at most {MAX_EXACT} points per set, got {len(a)} and {len(b)}")
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    M = ot.dist(a, b)  # squared Euclidean costs (n, m)
    cost = ot.emd2(np.full(len(a), 1 / len(a)), np.full(len(b), 1 / len(b)), M, numItermax=10_000_000)
    return float(np.sqrt(max(cost, 0.0)))


def sliced_w2(a: np.ndarray, b: np.ndarray, projections: int = 500, seed: int = 0) -> float:
    """Sliced 2-Wasserstein distance over random directions."""
    import ot

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(ot.sliced_wasserstein_distance(a, b, n_projections=projections, p=2, seed=seed))


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))


def energy_distance(a: np.ndarray, b: np.ndarray, max_points: int = 2000) -> float:
    """Energy distance 2 E|X - Y| - E|X - X'| - E|Y - Y'| (on at most max_points per set)."""
    a, b = (
        _subsample(np.asarray(a, np.float64), max_points),
        _subsample(np.asarray(b, np.float64), max_points, 1),
    )
    return float(2 * _pairwise(a, b).mean() - _pairwise(a, a).mean() - _pairwise(b, b).mean())


def mmd_rbf(a: np.ndarray, b: np.ndarray, max_points: int = 2000) -> float:
    """Biased MMD^2 with a mixture of RBF kernels at 0.25..4 times the median distance of b."""
    a, b = (
        _subsample(np.asarray(a, np.float64), max_points),
        _subsample(np.asarray(b, np.float64), max_points, 1),
    )
    d_ab, d_aa, d_bb = _pairwise(a, b) ** 2, _pairwise(a, a) ** 2, _pairwise(b, b) ** 2
    median = float(np.median(np.sqrt(d_bb[np.triu_indices(len(b), 1)]))) or 1.0
    total = 0.0
    for scale in (0.25, 0.5, 1.0, 2.0, 4.0):
        gamma = 1.0 / (2 * (scale * median) ** 2)
        total += (
            np.exp(-gamma * d_aa).mean() + np.exp(-gamma * d_bb).mean() - 2 * np.exp(-gamma * d_ab).mean()
        )
    return float(total)


def nn_distance(samples: np.ndarray, train: np.ndarray, chunk: int = 1000) -> np.ndarray:
    """Distance of every sample to its nearest training point (N,)."""
    out = []
    for i in range(0, len(samples), chunk):
        out.append(
            _pairwise(np.asarray(samples[i : i + chunk], np.float64), np.asarray(train, np.float64)).min(1)
        )
    return np.concatenate(out)


def memorisation(
    samples: np.ndarray, train: np.ndarray, held_out: np.ndarray | None = None
) -> dict[str, float]:
    """Mean nearest-training-point distance of samples, against held-out data (or leave-one-out training data)."""
    train = _subsample(train, 20_000, 2)
    d_s = float(nn_distance(_subsample(samples, 2000), train).mean())
    if held_out is not None:
        d_ref = float(nn_distance(_subsample(held_out, 2000, 3), train).mean())
    else:  # leave one out: the second-nearest distance of a training point to the training set
        probe = _subsample(train, 1000, 3)
        d_ref = float(np.sort(_pairwise(probe, train), axis=1)[:, 1].mean())
    return {"nn_dist": d_s, "nn_dist_ref": d_ref, "nn_ratio": d_s / d_ref if d_ref > 0 else float("nan")}


DISTRIBUTION_METRICS = {"w2": w2, "sliced_w2": sliced_w2, "energy": energy_distance, "mmd": mmd_rbf}


def distribution_metrics(
    samples: np.ndarray, reference: np.ndarray, names: tuple[str, ...] | None = None
) -> dict[str, float]:
    """W2 (exact, at most 5,000 points per side), sliced W2, energy distance and MMD between point sets (or only
    the named ones)."""
    s, r = _subsample(samples, MAX_EXACT), _subsample(reference, MAX_EXACT, 1)
    return {k: float(f(s, r)) for k, f in DISTRIBUTION_METRICS.items() if names is None or k in names}

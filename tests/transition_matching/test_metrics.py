import numpy as np
import pytest
import torch

from runkit.errors import UserError
from transition_matching.classifier import classifier_metrics, frechet_distance
from transition_matching.data import load_data
from transition_matching.metrics import (
    distribution_metrics,
    energy_distance,
    memorisation,
    mmd_rbf,
    sliced_w2,
    w2,
)


def test_w2_of_a_shift_is_the_shift_length():
    a = np.random.default_rng(0).normal(size=(300, 2))
    assert w2(a, a) == pytest.approx(0, abs=1e-9)
    assert w2(a, a + [3.0, 4.0]) == pytest.approx(5.0, rel=1e-6)
    assert sliced_w2(a, a + [3.0, 4.0], projections=200) < 5.0  # projections shorten the shift


def test_w2_refuses_too_many_points():
    with pytest.raises(UserError, match="at most 5000"):
        w2(np.zeros((5001, 2)), np.zeros((10, 2)))


def test_energy_and_mmd_separate_distributions():
    rng = np.random.default_rng(0)
    a, b, c = rng.normal(size=(500, 2)), rng.normal(size=(500, 2)), rng.normal(2, 1, size=(500, 2))
    assert energy_distance(a, b) < 0.05 < energy_distance(a, c)
    assert mmd_rbf(a, b) < 0.02 < mmd_rbf(a, c)
    m = distribution_metrics(a, c)
    assert set(m) == {"w2", "sliced_w2", "energy", "mmd"} and m["w2"] > 1.5


def test_memorisation_flags_copies():
    rng = np.random.default_rng(0)
    train, held = rng.normal(size=(1000, 2)), rng.normal(size=(500, 2))
    assert memorisation(train[:500], train, held)["nn_ratio"] < 1e-6
    assert 0.7 < memorisation(held, train, rng.normal(size=(500, 2)))["nn_ratio"] < 1.4


def test_frechet_distance():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(2000, 5))
    assert frechet_distance(f, f) == pytest.approx(0, abs=1e-6)
    assert frechet_distance(f, f + 1) == pytest.approx(5, rel=0.01)


def test_digits_classifier_scores_real_data_well_and_noise_badly(tmp_path):
    data = load_data("digits")
    torch.manual_seed(0)
    real = classifier_metrics(data, data.X[:500], data.labels[:500], tmp_path)
    noise = classifier_metrics(data, torch.randn(500, 16, 4).clamp(-1, 1), data.labels[:500], tmp_path)
    assert real["class_acc"] > 0.95 and noise["class_acc"] < 0.4
    assert real["cfid"] < 0.1 * noise["cfid"]
    assert any(tmp_path.iterdir())  # cached for the next call

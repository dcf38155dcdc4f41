import json

import pytest
import torch

from runkit.checkpoint import list_checkpoints, load_checkpoint, prune_checkpoints, save_checkpoint
from runkit.errors import CheckpointError, UserError
from runkit.rundir import create_run_dir, open_run_dir


def _state():
    return {
        "step": 3,
        "model": {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(3)},
        "optim": {
            "state": {0: {"exp_avg": torch.ones(2)}},
            "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.95)}],
        },
        "baselines": {"KuhnPoker-v2|0": 0.25},
    }


def test_roundtrip(tmp_path):
    save_checkpoint(tmp_path / "step_000003", _state())
    got = load_checkpoint(tmp_path / "step_000003").state
    assert got["step"] == 3
    assert torch.equal(got["model"]["w"], torch.arange(6.0).reshape(2, 3))
    assert got["optim"]["state"][0]["exp_avg"].tolist() == [1.0, 1.0]
    assert got["optim"]["param_groups"][0]["betas"] == (0.9, 0.95)
    assert got["baselines"] == {"KuhnPoker-v2|0": 0.25}


def test_truncated_tensor_file_is_refused(tmp_path):
    p = save_checkpoint(tmp_path / "step_000001", _state())
    f = p / "tensors.safetensors"
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="does not match its hash"):
        load_checkpoint(p)


def test_tampered_state_is_refused(tmp_path):
    p = save_checkpoint(tmp_path / "step_000001", _state())
    s = json.loads((p / "state.json").read_text())
    (p / "state.json").write_text(json.dumps(s).replace("0.25", "0.5"))
    with pytest.raises(CheckpointError, match="state.json"):
        load_checkpoint(p)


def test_missing_manifest_and_missing_dir(tmp_path):
    p = save_checkpoint(tmp_path / "step_000001", _state())
    (p / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="manifest"):
        load_checkpoint(p)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nope")


def test_overwrite_prune_and_extra_files(tmp_path):
    root = tmp_path / "checkpoints"
    for step in (1, 2, 3):
        save_checkpoint(
            root / f"step_{step:06d}", _state(), write_extra=lambda d: (d / "extra.txt").write_text("x")
        )
    save_checkpoint(root / "step_000003", _state())  # overwrite in place
    (root / ".step_000004.partial").mkdir()  # an interrupted save is ignored
    assert [s for s, _ in list_checkpoints(root)] == [1, 2, 3]
    prune_checkpoints(root, keep=2)
    assert [s for s, _ in list_checkpoints(root)] == [2, 3]
    (root / "step_000002" / "extra.txt").write_text("y")
    with pytest.raises(CheckpointError, match="extra.txt"):
        load_checkpoint(root / "step_000002")


def test_run_dir_refuses_to_clobber_and_checks_kind(tmp_path):
    run = create_run_dir(tmp_path / "run", {"lr": 1e-3}, kind="tm")
    save_checkpoint(run.checkpoints / "step_000001", {"step": 1})
    with pytest.raises(UserError, match="--resume"):
        create_run_dir(tmp_path / "run", {"lr": 1e-3}, kind="tm")
    assert open_run_dir(tmp_path / "run", kind="tm").latest_checkpoint()[0] == 1
    with pytest.raises(UserError, match="not a 'spiral' run"):
        open_run_dir(tmp_path / "run", kind="spiral")

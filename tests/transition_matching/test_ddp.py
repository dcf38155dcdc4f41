"""DDP under torchrun (gloo, 2 processes) equals one process with 2 micro-batches of the same global batch."""

import json
import os
import subprocess
import sys

import pytest
import torch
from tm_testutil import tiny_argv

from runkit.checkpoint import load_checkpoint
from runkit.metrics import read_metrics


def _tm_train(out, nproc: int, accum: int) -> None:
    argv = ["train", "--out", str(out), "--no-progress", "--nproc", str(nproc), "--accum", str(accum)]
    argv += tiny_argv(method="dtm", data="8gaussians", steps=6, batch_size=32, log_every=1, ckpt_every=6)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "transition_matching.cli", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tmp_path):
    _tm_train(tmp_path / "ddp", nproc=2, accum=1)
    _tm_train(tmp_path / "one", nproc=1, accum=2)
    ddp = json.loads((tmp_path / "ddp" / "ddp.json").read_text())
    assert ddp == {"world_size": 2, "replica_max_abs_diff": 0.0}
    loss_ddp = [r["train/loss"] for r in read_metrics(tmp_path / "ddp" / "metrics.jsonl")]
    loss_one = [r["train/loss"] for r in read_metrics(tmp_path / "one" / "metrics.jsonl")]
    assert len(loss_ddp) == 6 and loss_ddp == pytest.approx(loss_one, rel=1e-5)
    a = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "step_000006").state["model"]
    b = load_checkpoint(tmp_path / "one" / "checkpoints" / "step_000006").state["model"]
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k

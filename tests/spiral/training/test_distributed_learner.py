"""The device-agnostic learner on a tiny random Qwen3 (the paper's architecture) with model.device=cpu:
a training step, 2 gloo learner ranks under torchrun against one process on the same batches, and resume at
a different rank count."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from runkit.errors import UserError
from spiral.device import check_device, parse_topology, resolve_device
from spiral.training.distributed import DataParallel, World, rank_argv

QWEN3 = ["--preset", "tiny-test", "--model", "tiny-qwen3", "--device", "cpu", "--threads", "1",
         "--set", "run.plots=false", "--set", "eval.at_start=false", "--set", "eval.every=0",
         "--set", "eval.games=1"]  # fmt: skip
CONSTRAINED = ["--set", "rollout.action_mode=constrained", "--set", "learner.loss_norm=1.0"]
THINK = [
    "--set",
    "rollout.action_mode=think",
    "--set",
    "rollout.think_tokens=6",
    "--set",
    "learner.micro_batch_tokens=300",
]


def _train(out: Path, steps: int, *extra: str, nproc: int = 1, resume: bool = False) -> None:
    args = ["--resume", str(out)] if resume else [*QWEN3, "--out", str(out)]
    args += [*extra, "--steps", str(steps)]
    if nproc > 1:
        args += ["--nproc", str(nproc)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "spiral.cli", "train", *args], env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


def _weights(run: Path, step: int) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(run / "checkpoints" / f"step_{step:06d}" / "model.safetensors")


def _train_metrics(run: Path) -> list[dict]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    keep = (
        "train/loss",
        "train/pg_loss",
        "train/grad_norm",
        "train/entropy",
        "train/tokens",
        "train/ratio_mean",
    )
    return [{k: r[k] for k in keep if k in r} for r in rows if "train/loss" in r]


def _assert_same(a: dict, b: dict, atol: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert worst <= atol, worst


def _moved(a: dict, b: dict) -> float:
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


@pytest.mark.parametrize("mode", ["free", "constrained", "think", "warmup"])
def test_two_gloo_ranks_give_the_update_of_one_process(tmp_path, mode):
    warmup = [
        "--set",
        "warmup.rounds=1",
        "--set",
        "warmup.accept=lenient",
    ]  # a warm-up on rank 0, then shared
    extra = {"free": [], "constrained": CONSTRAINED, "think": THINK, "warmup": warmup}[mode]
    one, two = tmp_path / "one", tmp_path / "two"
    _train(one, 2, *extra)
    _train(two, 2, *extra, nproc=2)
    assert json.loads((two / "config.json").read_text())["run"]["topology"] == "0:2"
    start = _weights(one, 0)
    assert _moved(start, _weights(one, 2)) > 1e-5  # the steps did train
    _assert_same(_weights(one, 2), _weights(two, 2))
    m1, m2 = _train_metrics(one), _train_metrics(two)
    assert len(m1) == len(m2) == 2
    for a, b in zip(m1, m2, strict=True):  # metric sums gathered over both ranks
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-7), k


def test_resume_at_another_rank_count(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    _train(straight, 3, *CONSTRAINED)
    _train(split, 2, *CONSTRAINED, nproc=2)  # 2 ranks for steps 1-2, then one process for step 3
    _train(split, 3, resume=True, nproc=1)
    _assert_same(_weights(straight, 3), _weights(split, 3))


def test_qwen3_training_step_on_cpu(tiny_run):
    run = tiny_run(1, "--model", "tiny-qwen3", "--device", "cpu")
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["device"] == "cpu" and cfg["model"]["name"] == "tiny-qwen3"
    assert _moved(_weights(run, 0), _weights(run, 1)) > 1e-5
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(r["train/loss"])) for r in rows if "train/loss" in r)
    from spiral.model import load_model, load_tokenizer

    model = load_model("tiny-qwen3", load_tokenizer("tiny-qwen3"))
    assert type(model).__name__ == "Qwen3ForCausalLM"


def test_pieces_pad_every_rank_to_the_busiest():
    dp = DataParallel.__new__(DataParallel)
    dp.world = World(rank=1, size=3)
    assert dp.pieces(7) == [1, 4, None]
    dp.world = World(rank=0, size=3)
    assert dp.pieces(7) == [0, 3, 6]
    dp.world = World(rank=2, size=4)
    assert dp.pieces(1) == [None]


def test_rank_command_line_names_the_topology():
    argv = ["train", "--preset", "tiny-test", "--nproc", "2", "--out", "x", "--topology=1:2"]
    assert rank_argv("0:2", argv) == [
        "train",
        "--preset",
        "tiny-test",
        "--out",
        "x",
        "--set",
        'run.topology="0:2"',
    ]
    assert rank_argv("4:4", ["train"])[-4:] == ["--set", "run.backend=ray", "--set", "run.rollout_workers=4"]


@pytest.mark.parametrize("text, expected", [("", (0, 1)), ("4:4", (4, 4)), ("0:2", (0, 2))])
def test_topology_parses(text, expected):
    assert parse_topology(text) == expected


@pytest.mark.parametrize("text", ["4", "4:0", "a:b", "-1:2", "1:2:3", "9999:1"])
def test_bad_topology_is_one_line(text):
    with pytest.raises(UserError, match="run.topology"):
        parse_topology(text)


def test_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    check_device("cuda:3")
    for bad in ("gpu", "cuda:x", "tpu"):
        with pytest.raises(UserError, match="model.device"):
            check_device(bad)
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(UserError, match="no CUDA GPU"):
            resolve_device("cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the error is about a missing GPU")
def test_cuda_without_a_gpu_is_one_line(tmp_path, capsys):
    from spiral.cli import main

    assert main(["train", *QWEN3, "--device", "cuda", "--out", str(tmp_path / "r"), "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no CUDA GPU" in err, err


def test_paper_preset_carries_the_recipe():
    from spiral.config import load_settings

    s = load_settings("spiral-paper-qwen3-4b")
    assert (s.model.lora, s.model.device, s.model.generator, s.model.gradient_checkpointing) == (
        False, "cuda", "vllm", True)  # fmt: skip
    assert (s.learner.lr, s.learner.ppo_epochs, s.learner.kl_coef, s.learner.loss_norm) == (
        1e-6,
        2,
        0.0,
        4096.0,
    )
    assert (s.rollout.turns_per_step, s.rollout.max_new_tokens, s.rollout.temperature) == (128, 4096, 1.0)
    assert (s.advantage.estimator, s.advantage.decay, s.run.steps) == ("rae", 0.95, 400)


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "model.name is empty"),
        (["--model", "/nonexistent/Qwen3-4B-Base"], "unknown model"),
    ],
)
def test_paper_preset_without_its_model_is_one_line(tmp_path, capsys, extra, message):
    from spiral.cli import main

    assert main(["train", "--preset", "spiral-paper-qwen3-4b", *extra, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the error is about a missing GPU")
def test_paper_preset_without_a_gpu_is_one_line(tmp_path, capsys):
    from spiral.cli import main
    from spiral.model import load_model, load_tokenizer

    folder = tmp_path / "qwen3"
    load_model("tiny-qwen3", tok := load_tokenizer("tiny-qwen3")).save_pretrained(folder)
    tok.save_pretrained(folder)
    capsys.readouterr()  # the folder's own progress bars
    assert main(["train", "--preset", "spiral-paper-qwen3-4b", "--model", str(folder), "--out",
                 str(tmp_path / "r")]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no CUDA GPU" in err, err


def _share(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from spiral.training.distributed import share_weights

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    torch.manual_seed(rank)  # different weights on each rank
    layer = torch.nn.Linear(4, 3)
    layer.bias.requires_grad_(False)  # frozen tensors stay as they are
    share_weights(layer)
    torch.save({"weight": layer.weight.detach(), "bias": layer.bias.detach()}, f"{out}/{rank}.pt")
    dist.destroy_process_group()


def test_share_weights_gives_every_rank_rank_0s_trainable_weights(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_share, args=(port, str(tmp_path)), nprocs=2)
    a, b = torch.load(tmp_path / "0.pt"), torch.load(tmp_path / "1.pt")
    assert torch.equal(a["weight"], b["weight"])
    assert not torch.equal(a["bias"], b["bias"])

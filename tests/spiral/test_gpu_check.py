"""The prepared GPU check (benchmarks/gpu_check.py) runs its whole path on the CPU with a tiny Qwen3: real
trainer steps, the behaviour-vs-learner log-prob comparison, the weight sync, and the page."""

from __future__ import annotations

import json

import pytest
import torch


def test_gpu_check_on_the_cpu(tmp_path, bench_script):
    gc = bench_script("gpu_check")
    out = tmp_path / "gpu_check.md"
    argv = ["--device", "cpu", "--model", "tiny-qwen3", "--steps", "2", "--turns", "8", "--max-new-tokens", "8",
            "--out", str(out)]  # fmt: skip
    assert gc.main(argv) == 0
    text = out.read_text()
    r = json.loads(text.split("```json\n")[1].split("```")[0])
    assert r["device"] == "cpu" and r["generator"] == "hf" and r["logprob_tokens"] > 0
    # fp32 sampler and fp32 learner on the same weights: the two log-probs agree to float rounding
    assert r["logprob_max_abs_diff"] < 1e-4
    assert r["gen_tokens_per_s"] > 0 and r["learner_tokens_per_s"] > 0 and r["step_seconds"] > 0
    assert "behaviour vs learner log-prob" in text and "--device cpu" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="the error is about a missing GPU")
def test_gpu_check_without_a_gpu_is_one_line(capsys, tmp_path, bench_script):
    assert bench_script("gpu_check").main(["--out", str(tmp_path / "x.md")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs a CUDA GPU" in err
    assert not (tmp_path / "x.md").exists()

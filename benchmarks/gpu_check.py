"""The prepared GPU check of SPIRAL (scripts/gpu_check.sh runs it; at most ~10 minutes on one GPU).

A few self-play steps of a small model through the real trainer on `--device` (cuda by default), sampling with
vLLM where it is installed (else the transformers sampler on the GPU), then:
  - the behaviour log-probs that the sampler reported against the learner's recomputed ones on the same turns
    (mean and max absolute difference over response tokens);
  - tokens per second of generation and of the learner, and the seconds per step;
  - the cost of one weight sync from the learner to the sampler (no temporary folder: a state dict in memory).
The page goes to docs/results/gpu_check.md. `--device cpu` runs the same code on the CPU (the tests do, on a
tiny model); its numbers are not GPU numbers and the page says which device gave them.

    python benchmarks/gpu_check.py --model smollm2-135m-instruct --steps 3 --out docs/results/gpu_check.md
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import tempfile
import time
from pathlib import Path


def check(
    model: str, device: str, steps: int, turns: int, max_new_tokens: int, generator: str, work: Path
) -> dict:
    """Run the check; every number of the page as a dict."""
    import torch

    from runkit.rundir import create_run_dir
    from spiral.config import load_settings
    from spiral.training.learner import collate, response_logprobs
    from spiral.training.trainer import Trainer

    if generator == "auto":
        generator = "vllm" if device != "cpu" and importlib.util.find_spec("vllm") else "hf"
    overrides = [f'model.name="{model}"', f'model.device="{device}"', f'model.generator="{generator}"',
                 "model.lora=false", "rollout.action_mode=free", f"rollout.turns_per_step={turns}",
                 f"rollout.num_envs={turns}", f"rollout.gen_batch_size={turns}", f"rollout.max_new_tokens={max_new_tokens}",
                 'rollout.env_ids=["KuhnPoker-v2"]', "warmup.rounds=0", "eval.at_start=false", "eval.every=0",
                 "eval.games=1", 'eval.opponents=["random"]', "run.plots=false", f"run.steps={steps}",
                 f"run.save_every={steps}", "learner.kl_coef=0", "learner.lr=1e-6"]  # fmt: skip
    s = load_settings("tiny-test", overrides)
    run = create_run_dir(work / "run", s.to_dict(), kind="spiral", force=True)
    trainer = Trainer(s, run, log=lambda msg: None)
    rows = []
    for _ in range(steps):
        rows.append(trainer.train_step())
        trainer.step += 1
    # behaviour log-probs (the sampler's) against the learner's on one more batch of turns
    rollout = trainer.collector.collect(turns)
    batch = collate(rollout.turns)
    trainer.model.eval()
    with torch.no_grad(), trainer.learner.autocast:
        logp = (
            response_logprobs(trainer.model, batch, s.rollout.temperature, s.model.share_prefix).float().cpu()
        )
    mask = batch["response_mask"].bool()
    diff = (logp - batch["old_logprobs"])[mask].abs()
    sync = []
    for _ in range(3):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        trainer.policy.generator.load_weights(trainer.model)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        sync.append(time.perf_counter() - t0)
    late = rows[1:] or rows  # the first step pays for compilation and warm-up
    mean = lambda k: sum(r[k] for r in late) / len(late)  # noqa: E731
    train_tokens = sum(r.get("train/tokens", 0.0) for r in late)
    return {
        "device": str(trainer.learner.device),
        "device_name": torch.cuda.get_device_name()
        if torch.cuda.is_available() and device != "cpu"
        else (platform.processor() or platform.machine()),
        "generator": generator,
        "model": model,
        "torch": torch.__version__,
        "steps": steps,
        "turns_per_step": turns,
        "logprob_mean_abs_diff": float(diff.mean()) if diff.numel() else float("nan"),
        "logprob_max_abs_diff": float(diff.max()) if diff.numel() else float("nan"),
        "logprob_tokens": int(diff.numel()),
        "gen_tokens_per_s": mean("rollout/gen_tokens_per_s"),
        "learner_tokens_per_s": train_tokens / max(sum(r["train/seconds"] for r in late), 1e-9),
        "step_seconds": mean("time/step_seconds"),
        "rollout_seconds": mean("rollout/seconds"),
        "train_seconds": mean("train/seconds"),
        "weight_sync_seconds": min(sync),
        "peak_gpu_gb": torch.cuda.max_memory_allocated() / 1e9 if torch.cuda.is_available() else 0.0,
    }


def page(r: dict, command: str) -> str:
    """The Markdown of docs/results/gpu_check.md."""
    rows = [
        ("device", f"{r['device']} ({r['device_name']}), torch {r['torch']}"),
        ("model / sampler", f"{r['model']} / {r['generator']}"),
        ("steps x turns", f"{r['steps']} x {r['turns_per_step']}"),
        ("behaviour vs learner log-prob, mean abs diff", f"{r['logprob_mean_abs_diff']:.2e} over {r['logprob_tokens']} tokens"),
        ("behaviour vs learner log-prob, max abs diff", f"{r['logprob_max_abs_diff']:.2e}"),
        ("generation tokens/s", f"{r['gen_tokens_per_s']:.0f}"),
        ("learner tokens/s (forward + backward)", f"{r['learner_tokens_per_s']:.0f}"),
        ("seconds per step (rollout + learner)", f"{r['step_seconds']:.2f} ({r['rollout_seconds']:.2f} + {r['train_seconds']:.2f})"),
        ("weight sync learner -> sampler (s)", f"{r['weight_sync_seconds']:.3f}"),
        ("peak GPU memory (GB)", f"{r['peak_gpu_gb']:.2f}"),
    ]  # fmt: skip
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return (f"# GPU check of SPIRAL\n\n    {command}\n\nMeasured by benchmarks/gpu_check.py (steps after the first "
            f"averaged).\n\n| measure | value |\n|---|---|\n{table}\n\n```json\n{json.dumps(r, indent=1)}\n```\n")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    from runkit.errors import UserError

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m-instruct", help="model spec or local folder")
    p.add_argument("--device", default="cuda", help="cuda (the check), or cpu (the tests)")
    p.add_argument("--generator", default="auto", choices=("auto", "vllm", "hf"))
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--turns", type=int, default=64)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--out", default="docs/results/gpu_check.md")
    args = p.parse_args(argv)
    try:
        import torch

        if args.device != "cpu" and not torch.cuda.is_available():
            raise UserError(
                "the GPU check needs a CUDA GPU (torch sees none); --device cpu runs it on the CPU"
            )
        with tempfile.TemporaryDirectory() as tmp:
            r = check(
                args.model,
                args.device,
                args.steps,
                args.turns,
                args.max_new_tokens,
                args.generator,
                Path(tmp),
            )
    except UserError as e:
        print(f"gpu_check: error: {e}", file=sys.stderr)
        return 2
    command = "python benchmarks/gpu_check.py " + " ".join(argv if argv is not None else sys.argv[1:])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(page(r, command), encoding="utf-8")
    print(page(r, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())

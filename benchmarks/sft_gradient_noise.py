"""Would ten times the expert turns in the same updates help SFT? The gradient noise scale of an SFT preset.

Usage: python benchmarks/sft_gradient_noise.py [--preset sft-tictactoe-smollm2-matched] [--small 16] [--batches 16]
           [--seed 0] [--out docs/results/sft_gradient_noise.md]

A budget-matched SFT run takes N expert turns in U optimizer updates; the "10x" run takes 10N turns in the same U
updates, so each of its batches is ten times larger. A larger batch only helps if the batch gradient is noisy:
with per-turn gradient covariance S and mean gradient G, a batch of B turns has E|g_B|^2 = |G|^2 + tr(S) / B,
so the share of the batch gradient's squared norm that is signal is |G|^2 / (|G|^2 + tr(S) / B), and the
noise scale B_noise = tr(S) / |G|^2 is the batch size at which signal and noise weigh the same (McCandlish et
al. 2018, "An empirical model of large-batch training"). This probe draws `--batches` disjoint batches of
`--small` expert turns from the preset's own expert data, computes each one's LoRA gradient exactly as the SFT
run does (`spiral.training.warmup.weighted_backward`, at the model the run starts from), and estimates tr(S)
from their spread and |G|^2 from their mean (unbiased: |mean|^2 minus the spread's share). No optimizer step
is taken. It reads the noise scale at one model: the preset's start, or `--model` (a run folder, e.g. an SFT run's
end); it usually grows as training goes on.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from runkit.errors import UserError, run_cli


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="sft-tictactoe-smollm2-matched")
    parser.add_argument("--model", default="", help="override model.name (e.g. tiny, for a quick check)")
    parser.add_argument("--small", type=int, default=16, help="expert turns per probe batch")
    parser.add_argument("--batches", type=int, default=16, help="probe batches (disjoint)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    if args.small < 1 or args.batches < 2:
        raise UserError("--small must be >= 1 and --batches >= 2")

    from runkit.rundir import create_run_dir
    from spiral.sft import settings as sft_settings
    from spiral.sft.noise import noise_scale, signal_share
    from spiral.sft.trainer import SFTTrainer
    from spiral.training.warmup import weighted_backward

    overrides = ["sft.eval_turns=0", "run.plots=false", f"run.threads={args.threads}"]
    if args.model:
        overrides.append(f"model.name={args.model}")
    s, sft = sft_settings.load(args.preset, overrides)  # the trainer sets run.threads
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = SFTTrainer(
            s, sft, create_run_dir(Path(tmp) / "run", {}, kind=sft_settings.KIND, force=True)
        )
        _, data = trainer._data(args.small * args.batches, args.seed)
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(args.seed)).tolist()
        model = trainer.model
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        rows, distinct = [], 0
        for k in range(args.batches):
            batch = [data[i] for i in order[k * args.small : (k + 1) * args.small]]
            model.zero_grad(set_to_none=True)
            _, n = weighted_backward(model, batch, sft.micro_batch_size)
            distinct += n
            rows.append(torch.cat([p.grad.detach().flatten().float() for p in params]))
            print(f"batch {k + 1}/{args.batches}: {n} distinct pairs, |g|^2 = {float(rows[-1].pow(2).sum()):.4g}",
                  flush=True)  # fmt: skip
    est = noise_scale(torch.stack(rows), args.small)
    seconds = time.perf_counter() - t0
    matched = sft.batch_size or args.small
    lines = [
        f"# SFT gradient noise scale: `{args.preset}` at "
        + (f"the model `{args.model}`" if args.model else "its start (step 0)"),
        "",
        f"Command: `python benchmarks/sft_gradient_noise.py --preset {args.preset} --small {args.small} "
        f"--batches {args.batches} --seed {args.seed}`"
        + (f" (model {args.model})" if args.model else "")
        + f"; {seconds:.0f} s, {args.batches} disjoint batches of {args.small} expert turns "
        f"({distinct} distinct (prompt, move) pairs), {sum(p.numel() for p in params):,} trained parameters.",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| mean squared norm of a {args.small}-turn batch gradient | {est['small_sq']:.4g} |",
        f"| squared norm of their mean ({args.small * args.batches} turns) | {est['mean_sq']:.4g} |",
        f"| tr(S), per-turn gradient variance | {est['trace']:.4g} |",
        f"| \\|G\\|^2, squared norm of the mean gradient (unbiased) | {est['signal']:.4g} |",
        f"| noise scale B_noise = tr(S) / \\|G\\|^2 | {est['b_noise']:.4g} turns |",
        f"| signal share of a batch of {matched} (the preset's) | {signal_share(est, matched):.3f} |",
        f"| signal share of a batch of {10 * matched} (10x the turns, same updates) | "
        f"{signal_share(est, 10 * matched):.3f} |",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        from runkit.io import atomic_write_text

        atomic_write_text(Path(args.out), text)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, "sft_gradient_noise"))

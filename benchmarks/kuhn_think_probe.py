"""Supervised think-mode probe: through a sampled thought, how many updates does card dependence need?

Usage: python benchmarks/kuhn_think_probe.py [--steps 60] [--lr 1e-4] [--thoughts 8] [--think-tokens 24]
           [--temperature 1.0] [--no-thought] [--every 5] [--samples 16] [--out docs/results/kuhn_think_probe.md]

The twin of benchmarks/kuhn_supervised_probe.py for `rollout.action_mode = think`, built through the run's own
code (the `kuhn-smollm2-think` preset's learner, policy and thought sampler): no reinforcement learning. Each
step samples `--thoughts` thoughts per Kuhn information set from the current model (the run's thought sampler,
temperature `--temperature`), scores the legal moves after each thought with the learner's scorer
(spiral.generation.think), and takes one AdamW step on the cross-entropy to Kuhn's Nash policy (alpha = 1/6)
per thought; the thoughts themselves get no gradient. Every `--every` steps the think readout (the one the runs
log: `--samples` thoughts per information set, moves exact after each, averaged) gives the exploitability with
its bootstrap interval and the thought diagnostics. `--no-thought` trains and reads out with empty thoughts
(constrained scoring through the same code), the control.

It separates two reasons a think-mode run can stay card-blind: if supervision through a sampled thought needs
far more updates than without one, the thought channel is the bottleneck; if not, the RL signal is.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from spiral.agents.kuhn import KEYS, nash_policy
from spiral.config import load_settings
from spiral.evaluation.exploitability import infoset_prompts, openspiel_exploitability, think_readout
from spiral.generation.base import Sampling
from spiral.generation.think import score_thought_tokens
from spiral.training import factories

NASH_GAPS = "Nash's own differences: P(call) K-J +1.00, P(bet) K-J +0.33, after a check +0.67."


def gaps(pol: dict[str, float]) -> tuple[float, float, float]:
    """P(call facing a bet), P(bet as opener), P(bet after a check): K minus J."""
    return pol["Kb"] - pol["Jb"], pol["K"] - pol["J"], pol["Kp"] - pol["Jp"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--thoughts", type=int, default=8, help="thoughts per information set per step")
    parser.add_argument("--think-tokens", type=int, default=24)
    parser.add_argument("--temperature", type=float, default=1.0, help="thought sampling temperature")
    parser.add_argument("--no-thought", action="store_true", help="empty thoughts: the constrained control")
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--samples", type=int, default=16, help="thoughts per information set in a readout")
    parser.add_argument("--preset", default="kuhn-smollm2-think")
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.thoughts < 1 or args.every < 1 or args.samples < 2 or args.temperature <= 0:
        print(
            "error: --steps, --thoughts, --every >= 1, --samples >= 2 and --temperature > 0", file=sys.stderr
        )
        return 2
    torch.set_num_threads(2)
    torch.manual_seed(0)
    s = load_settings(args.preset, [f"learner.lr={args.lr}", f"rollout.think_tokens={args.think_tokens}",
                                    "learner.kl_coef=0.0", "rollout.action_mode=think"])  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        tok, model, learner = factories.build_learner(s, Path(tmp), None)
    policy = factories.make_policy(s, model, tok, 0)
    sampler = policy.generator
    prompts = infoset_prompts()
    enc = [list(p) for p in policy.format.encode([prompts[k][0] for k in KEYS])]
    cands = [policy.candidates.for_legal(prompts[k][1]) for k in KEYS]
    nash = nash_policy(1 / 6)
    target = torch.tensor([[1 - nash[k], nash[k]] for k in KEYS])
    n = 1 if args.no_thought else args.thoughts
    rows = [i for i in range(len(KEYS)) for _ in range(n)]
    opt = torch.optim.AdamW(learner.params, lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0)
    table = []
    t0 = time.perf_counter()

    def readout() -> tuple[float, float, float, dict, dict]:
        if args.no_thought:
            with torch.no_grad(), learner.autocast:
                _, sc = score_thought_tokens(model, enc, list(range(len(KEYS))), [[] for _ in KEYS], cands)
            pol = {k: float(torch.softmax(sc[i].float(), -1)[1]) for i, k in enumerate(KEYS)}
            ex = openspiel_exploitability(pol)
            return ex, ex, ex, pol, {}
        r = think_readout(policy, args.temperature, args.samples, seed=0)
        return r.exploitability, r.ci_low, r.ci_high, r.probs, r.diagnostics

    for step in range(args.steps + 1):
        if step % args.every == 0 or step == args.steps:
            ex, lo, hi, pol, diag = readout()
            table.append((step, ex, lo, hi, *gaps(pol), diag.get("card_accuracy", float("nan")),
                          diag.get("tv", float("nan")), diag.get("length", 0.0), time.perf_counter() - t0))  # fmt: skip
            r = table[-1]
            print(f"step {step} exploitability {ex:.3f} [{lo:.3f}, {hi:.3f}]  K-J call {r[4]:+.2f} bet {r[5]:+.2f} "
                  f"after check {r[6]:+.2f}  card acc {r[7]:.2f}  tv {r[8]:.3f}  length {r[9]:.1f}  {r[10]:.0f} s",
                  flush=True)  # fmt: skip
        if step == args.steps:
            break
        flat = [enc[i] for i in rows]
        if args.no_thought:
            thoughts = [[] for _ in rows]
        else:
            with torch.no_grad():
                model.eval()
                drawn = sampler.sample(
                    flat, Sampling(args.temperature, 1.0, args.think_tokens), args.think_tokens
                )
            thoughts = [th for th, _, _ in drawn]
        model.train()
        with learner.autocast:
            _, scores = score_thought_tokens(model, enc, rows, thoughts, [cands[i] for i in rows])
        logp = torch.stack([torch.log_softmax(sc.float(), -1) for sc in scores])
        loss = -(target[rows] * logp).sum(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sampler.load_weights(model)
    mode = (
        "no thought (constrained control)"
        if args.no_thought
        else (
            f"{args.thoughts} thoughts per information set per step, at most {args.think_tokens} tokens, "
            f"temperature {args.temperature:g}; readout {args.samples} thoughts per information set"
        )
    )
    lines = [
        "# Think-mode supervised probe: card dependence through a sampled thought",
        "",
        "Command: `python benchmarks/kuhn_think_probe.py " + " ".join(sys.argv[1:] if argv is None else argv) + "`",
        "",
        f"Preset {args.preset}'s learner and thought sampler, LoRA, lr {args.lr:g}, {mode}. Target Nash (alpha "
        f"1/6). {NASH_GAPS} Card accuracy: held-out classifier of the card from the thought (chance 0.33).",
        "",
        "| step | exploitability [95 % CI] | P(call) K - J | P(bet) K - J | after check K - J | card accuracy | TV(move "
        "\\| thought) | thought length | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
        *[f"| {r[0]} | {r[1]:.3f} [{r[2]:.3f}, {r[3]:.3f}] | {r[4]:+.2f} | {r[5]:+.2f} | {r[6]:+.2f} | {r[7]:.2f} | "
          f"{r[8]:.3f} | {r[9]:.1f} | {r[10]:.0f} |" for r in table],
    ]  # fmt: skip
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

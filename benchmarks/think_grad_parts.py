"""How a think-mode update's gradient splits between the thought's tokens, the move and the entropy bonus.

Usage: python benchmarks/think_grad_parts.py [--preset kuhn-smollm2-think] [--batches 3] [--set key=value ...]
           [--out docs/results/think_grad_parts.md]

Through the run's own code (factories: learner, policy, collector; the advantage estimator; drop_zero), this
plays `--batches` self-play steps of the preset from the base model (no update between them: the policy stays
the base model, the estimator's baselines move as in a run) and, for each batch, takes the gradient of each
term of spiral.training.think_update's loss on its own: the thought's PPO term (token terms summed, divided by
`learner.loss_norm`), the move's PPO term, the entropy bonus. At the base model the PPO ratio is 1, so each
is the plain policy-gradient term. It prints their norms over the LoRA parameters, the cosine between the
thought's and the move's, and how much of the move's gradient survives the optimizer's clip
(`learner.grad_clip`) once the other terms are added: min(1, clip / |total|).

The question it answers: does the thought's term, whose 24 token scores vary far more than one move's,
drown the move's (the part that must learn the card) under the norm clip?
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

from spiral.config import load_settings
from spiral.generation.think import score_thought_tokens, think_chunks
from spiral.training import factories
from spiral.training.advantage import AdvantageEstimator, drop_zero
from spiral.training.losses import ppo_clip_loss

PARTS = ("thought", "move", "entropy")


def part_losses(learner, turns: list) -> list[dict[str, torch.Tensor]]:
    """Per chunk of turns (as update_think chunks them): each term of the loss, already divided by len(turns)."""
    s = learner.s
    budget = s.micro_batch_tokens if s.micro_batch_tokens > 0 else 4096
    index = think_chunks([t.prompt_ids for t in turns], [len(t.response_ids) for t in turns], budget)
    n = len(turns)
    out = []
    for idx in index:
        chunk = [turns[i] for i in idx]
        prompts: dict[tuple, int] = {}
        rows = [prompts.setdefault(tuple(t.prompt_ids), len(prompts)) for t in chunk]
        thoughts = [list(t.response_ids[: t.thought_len]) for t in chunk]
        with learner.autocast:
            toks, scores = score_thought_tokens(learner.model, [list(p) for p in prompts], rows, thoughts,
                                                [t.candidates for t in chunk], learner.temperature)  # fmt: skip
        toks = toks.float()
        move_lp = [torch.log_softmax(sc.float(), dim=-1) for sc in scores]
        R, L = toks.shape
        mask = torch.zeros((R, L))
        for r, t in enumerate(chunk):
            mask[r, : t.thought_len] = 1
        adv = torch.tensor([t.advantage for t in chunk])
        move = torch.stack([lp[t.choice] for lp, t in zip(move_lp, chunk, strict=True)])[:, None]
        th, _ = ppo_clip_loss(toks, toks.detach(), adv, mask, s.clip, s.loss_norm)
        mv, _ = ppo_clip_loss(move, move.detach(), adv, torch.ones_like(move), s.clip, 1.0)
        ent = sum(-(lp.exp() * lp).sum() for lp in move_lp)
        out.append({"thought": th.sum() / n, "move": mv.sum() / n, "entropy": -s.entropy_coef * ent / n})
    return out


def gradient(learner, losses: list[torch.Tensor]) -> torch.Tensor:
    """The flattened gradient over the trainable parameters of the sum of `losses`."""
    grads = torch.autograd.grad(sum(losses), learner.params, retain_graph=True, allow_unused=True)
    return torch.cat(
        [
            (g if g is not None else torch.zeros_like(p)).flatten()
            for g, p in zip(grads, learner.params, strict=True)
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="kuhn-smollm2-think")
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    if args.batches < 1:
        print("error: --batches must be >= 1", file=sys.stderr)
        return 2
    s = load_settings(args.preset, ["learner.kl_coef=0.0", *args.set])
    if s.rollout.action_mode != "think":
        print(
            f"error: preset {args.preset} is not a think-mode preset (rollout.action_mode = think)",
            file=sys.stderr,
        )
        return 2
    torch.set_num_threads(2)
    torch.manual_seed(s.run.seed)
    with tempfile.TemporaryDirectory() as tmp:
        tok, model, learner = factories.build_learner(s, Path(tmp), None)
    policy = factories.make_policy(s, model, tok, s.run.seed)
    collector = factories.make_collector(s, policy, s.run.seed)
    a = s.advantage
    est = AdvantageEstimator(a.estimator, a.decay, a.order, a.key_by, a.control, s.run.seed)
    clip = s.learner.grad_clip
    rows = []
    model.train()
    for b in range(args.batches):
        rollout = collector.collect(s.rollout.turns_per_step)
        est.assign(rollout.games)
        turns = drop_zero(rollout.turns, s.rollout.format_bonus)
        chunks = part_losses(learner, turns)
        g = {k: gradient(learner, [c[k] for c in chunks]) for k in PARTS}
        total = sum(g.values())
        norms = {k: float(v.norm()) for k, v in g.items()}
        cos = float(torch.nn.functional.cosine_similarity(g["thought"], g["move"], dim=0))
        scale = min(1.0, clip / max(float(total.norm()), 1e-12))
        alone = min(1.0, clip / max(norms["move"], 1e-12))
        rows.append((b, len(turns), norms["thought"], norms["move"], norms["entropy"], float(total.norm()), cos,
                     scale, alone))  # fmt: skip
        print(f"batch {b}: {len(turns)} turns  |g| thought {norms['thought']:.3f}  move {norms['move']:.3f}  "
              f"entropy {norms['entropy']:.3f}  total {float(total.norm()):.3f}  cos(thought, move) {cos:+.3f}  "
              f"move kept after clip {scale:.2f} (alone: {alone:.2f})", flush=True)  # fmt: skip
    lines = [
        "# Think mode: the update's gradient by term, at the base model",
        "",
        "Command: `python benchmarks/think_grad_parts.py " + " ".join(sys.argv[1:] if argv is None else argv) + "`",
        "",
        f"Preset {args.preset} (advantage {a.estimator}, loss_norm {s.learner.loss_norm:g}, entropy "
        f"{s.learner.entropy_coef:g}, grad clip {clip:g}); norms over the LoRA parameters. 'Move kept': the "
        "factor the clip applies to the whole gradient, min(1, clip / |total|); beside it the factor if the move's "
        "term were alone.",
        "",
        "| batch | turns | thought | move | entropy | total | cos(thought, move) | move kept | move kept alone |",
        "|---|---|---|---|---|---|---|---|---|",
        *[f"| {r[0]} | {r[1]} | {r[2]:.3f} | {r[3]:.3f} | {r[4]:.3f} | {r[5]:.3f} | {r[6]:+.3f} | {r[7]:.2f} | "
          f"{r[8]:.2f} |" for r in rows],
    ]  # fmt: skip
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

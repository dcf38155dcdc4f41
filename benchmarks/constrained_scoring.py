"""Constrained move scoring on SmolLM2: the tree-masked candidate pass against copying the cache per candidate.

Usage: python benchmarks/constrained_scoring.py [--positions 48] [--game TicTacToe-v0] [--reps 3]
           [--out docs/results/constrained_scoring.md]

Positions come from seeded random games. Both methods score the same distinct prompts in the chunks that
MoveSampler forms (16,384 prompt tokens) and share the prompt pass (spiral.generation.prefix); they differ in how
the candidate tokens after the prompt are run:

  before  the method before session 9: prompts grouped only when they share 3/4 of the group's prefix (so
          TicTacToe prompts, whose own part is half the prompt, shared nothing), and the prompt's KV cache
          repeated once per candidate (one row each);
  copy    today's grouping (spiral.generation.prefix.plan_prefixes: join a group when that computes fewer
          tokens), still one cache copy per candidate;
  tree    spiral.generation.actions.score_candidates: today's grouping, one row per prompt, its candidates side
          by side under a tree-shaped attention mask.

Timed interleaved (before, copy, tree, before, ...), the fastest repetition kept, without gradients (rollout
scoring, chunks of 16,384 prompt tokens as MoveSampler forms them) and with a backward pass (the learner's update,
chunks of 4,096 tokens as the presets' learner.micro_batch_tokens; with gradients on chunks of 16,384 tokens a
first attempt grew to 16 GB resident and was killed for memory beside an 8 GB training run). The largest score
difference is printed too.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

import torch

from spiral.games.registry import make
from spiral.generation import prefix
from spiral.generation.actions import Candidates, score_candidates, token_chunks
from spiral.generation.prefix import forward_shared_prefixes
from spiral.model import PromptFormat, load_model, load_tokenizer


def score_by_cache_copies(model, prompts, candidates):
    """The previous method: each prompt's cache repeated per candidate, candidate tails in one padded batch."""
    out, mask, cache = forward_shared_prefixes(model, prompts)
    first_logp = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)
    owner = [b for b, cands in enumerate(candidates) for _ in cands]
    flat = [c for cands in candidates for c in cands]
    scores = first_logp[torch.tensor(owner), torch.tensor([c[0] for c in flat])]
    L = max(len(c) for c in flat)
    if L > 1:
        idx = torch.tensor(owner)
        cache.batch_select_indices(idx)
        ids = torch.zeros((len(flat), L - 1), dtype=torch.long)
        target = torch.zeros((len(flat), L - 1), dtype=torch.long)
        valid = torch.zeros((len(flat), L - 1), dtype=torch.bool)
        for n, c in enumerate(flat):
            ids[n, : len(c) - 1] = torch.tensor(c[:-1])
            target[n, : len(c) - 1] = torch.tensor(c[1:])
            valid[n, : len(c) - 1] = True
        pos = torch.tensor([len(prompts[b]) for b in owner])[:, None] + torch.arange(L - 1)[None, :]
        step = model(input_ids=ids, attention_mask=torch.cat([mask[idx], valid.long()], -1), position_ids=pos,
                     cache=cache, use_cache=True)  # fmt: skip
        logp = torch.log_softmax(step.logits.float(), dim=-1)
        scores = scores + (logp.gather(-1, target[..., None]).squeeze(-1) * valid).sum(-1)
    result, i = [], 0
    for cands in candidates:
        result.append(scores[i : i + len(cands)])
        i += len(cands)
    return result


def plan_by_share(prompts, min_len: int = 32, keep: float = 0.75):
    """The grouping before session 9: join when the prompt shares `keep` of the group's prefix."""
    groups, group_of = [], [0] * len(prompts)
    for i in sorted(range(len(prompts)), key=lambda i: prompts[i]):
        p, cap = prompts[i], len(prompts[i]) - 1
        if groups:
            n = len(os.path.commonprefix([groups[-1], p[:cap]]))
            if n >= min_len and n >= keep * len(groups[-1]):
                groups[-1] = groups[-1][:n]
                group_of[i] = len(groups) - 1
                continue
        groups.append(p[:cap])
        group_of[i] = len(groups) - 1
    return groups, group_of, [len(groups[g]) for g in group_of]


def score_before(model, prompts, candidates):
    """Cache copies under the old grouping (swapped into spiral.generation.prefix for the call)."""
    saved = prefix.plan_prefixes
    prefix.plan_prefixes = plan_by_share
    try:
        return score_by_cache_copies(model, prompts, candidates)
    finally:
        prefix.plan_prefixes = saved


def positions(game: str, n: int, seed: int) -> list[tuple[str, list[str]]]:
    """(observation, legal moves) of `n` distinct positions from seeded random games."""
    rng, seen, out = random.Random(seed), set(), []
    g = 0
    while len(out) < n:
        env = make(game)
        env.reset(2, seed=seed + g)
        g += 1
        done = False
        while not done:
            _, obs = env.get_observation()
            legal = list(env.legal_actions())
            if (obs, tuple(legal)) not in seen:
                seen.add((obs, tuple(legal)))
                out.append((obs, legal))
            done, _ = env.step(rng.choice(legal))
    return out[:n]


def run(fn, model, prompts, cands, grad: bool, budget: int) -> tuple[float, list[torch.Tensor]]:
    """Seconds to score every chunk of about `budget` prompt tokens (and backpropagate when `grad`)."""
    scores: list[torch.Tensor | None] = [None] * len(prompts)
    t0 = time.perf_counter()
    for chunk in token_chunks(prompts, budget):
        with torch.set_grad_enabled(grad):
            got = fn(model, [prompts[i] for i in chunk], [cands[i] for i in chunk])
            if grad:
                model.zero_grad(set_to_none=True)
                torch.cat([s.logsumexp(-1, keepdim=True) for s in got]).sum().backward()
        for i, s in zip(chunk, got, strict=True):
            scores[i] = s.detach()
    return time.perf_counter() - t0, scores


def bf16_probe(args, model, prompts, cands) -> int:
    """Print the tree method's seconds in fp32 and under bf16 autocast (interleaved), with the score difference."""
    from spiral.device import autocast_for

    print("| pass | fp32 (s) | bf16 autocast (s) | fp32 / bf16 | max abs score difference |")
    for grad in (False, True):
        best, got = {"fp32": float("inf"), "bf16": float("inf")}, {}
        for _ in range(args.reps):
            for dtype in ("fp32", "bf16"):
                with autocast_for(dtype):
                    sec, got[dtype] = run(score_candidates, model, prompts, cands, grad,
                                          args.learner_tokens if grad else args.rollout_tokens)  # fmt: skip
                best[dtype] = min(best[dtype], sec)
        diff = max(
            float((a.float() - b.float()).abs().max()) for a, b in zip(got["fp32"], got["bf16"], strict=True)
        )
        what = "scores + backward (learner)" if grad else "scores (rollout)"
        print(f"| {what} | {best['fp32']:.2f} | {best['bf16']:.2f} | {best['fp32'] / best['bf16']:.2f}x | {diff:.1e} |",
              flush=True)  # fmt: skip
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--positions", type=int, default=48)
    ap.add_argument("--game", default="TicTacToe-v0")
    ap.add_argument("--style", default="compact", choices=("paper", "compact"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--rollout-tokens", type=int, default=16384, help="chunk size of MoveSampler (prompt tokens)"
    )
    ap.add_argument(
        "--learner-tokens", type=int, default=4096, help="the presets' learner.micro_batch_tokens"
    )
    ap.add_argument("--out", default="")
    ap.add_argument("--bf16-probe", action="store_true",
                    help="instead: the tree method in fp32 against bf16 autocast (printed only)")  # fmt: skip
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tok = load_tokenizer("smollm2-135m-instruct")
    model = load_model("smollm2-135m-instruct", tok)
    model.eval()
    pos = positions(args.game, args.positions, 0)
    prompts = PromptFormat(tok, "auto", args.style).encode([o for o, _ in pos])
    cands = [Candidates(tok).for_legal(lg) for _, lg in pos]
    n_cand = sum(len(c) for c in cands)
    mean_len = sum(len(p) for p in prompts) / len(prompts)
    head = (f"{args.game}: {len(prompts)} distinct positions, {n_cand} candidates "
            f"({n_cand / len(prompts):.1f} a position), prompts {mean_len:.0f} tokens on average, "
            f"{args.threads} threads, fp32, best of {args.reps}; chunks of {args.rollout_tokens} (rollout) and "
            f"{args.learner_tokens} (learner) prompt tokens")  # fmt: skip
    print(head, flush=True)
    if args.bf16_probe:
        return bf16_probe(args, model, prompts, cands)
    rows = []
    for grad in (False, True):
        methods = (("before", score_before), ("copy", score_by_cache_copies), ("tree", score_candidates))
        best = {name: float("inf") for name, _ in methods}
        got = {}
        for _ in range(args.reps):
            for name, fn in methods:
                budget = args.learner_tokens if grad else args.rollout_tokens
                sec, got[name] = run(fn, model, prompts, cands, grad, budget)
                best[name] = min(best[name], sec)
        diff = max(float((a - b).abs().max()) for name in ("before", "copy")
                   for a, b in zip(got[name], got["tree"], strict=True))  # fmt: skip
        what = "scores + backward (learner)" if grad else "scores (rollout)"
        row = (f"| {what} | {best['before']:.2f} | {best['copy']:.2f} | {best['tree']:.2f} | "
               f"{best['before'] / best['tree']:.1f}x | {1e3 * best['tree'] / len(prompts):.0f} | {diff:.1e} |")  # fmt: skip
        print(row, flush=True)
        rows.append(row)
    if args.out:
        cmd = "python benchmarks/constrained_scoring.py " + " ".join(sys.argv[1:])
        text = "\n".join([
            "# Constrained move scoring: prompt grouping and the tree mask", "",
            f"Command: `{cmd}`", "", head + ".", "",
            "| pass | before (s) | copy (s) | tree (s) | before / tree | tree ms / position | max abs score difference |",
            "|---|---|---|---|---|---|---|", *rows, "",
        ])  # fmt: skip
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

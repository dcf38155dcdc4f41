"""Learner throughput on the Kuhn preset: trained turns per second and learner GFLOP/s against a GEMM probe.

Usage: python benchmarks/learner_throughput.py [--turns 128] [--repeats 2] [--out docs/results/learner_throughput.md]

One batch of one-round KuhnPoker-v2 turns (random information sets and moves; SmolLM2-135M-Instruct with the
presets' LoRA r = 16) goes through one PPO epoch of `spiral.training.learner.Learner` along each path, side by side in
one process (paths interleaved, the best of `--repeats` kept):
- `old`: the learner as the earlier Kuhn runs used it: the paper's prompt, free-form answers (`\\boxed{move}`
  and the stop token), micro-batches of 4 turns, fp32, 1 thread;
- `free-fp32` / `free-bf16`: free-form answers, compact prompt, micro-batches of 4,096 tokens (shared prefixes
  computed once per micro-batch), 2 threads, fp32 or bf16 autocast;
- `constrained-fp32` / `constrained-bf16`: constrained decoding (spiral.generation.actions): each distinct prompt is
  scored once, its turns take their move's log-prob from it, 2 threads.
Learner GFLOP/s counts the tokens each path really computes (after prefix sharing) at 4 * parameters FLOPs per
token (forward 2, backward through the activations 2; LoRA computes no weight gradients for frozen weights),
against `torch.matmul` probes (bf16 and fp32, 2,048-square, 2 threads) measured in the same run.
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from roofline import gemm_probe  # noqa: E402
from spiral.agents.kuhn import KEYS  # noqa: E402
from spiral.config import ALL_LORA_TARGETS, LearnerSettings  # noqa: E402
from spiral.evaluation.exploitability import infoset_prompts  # noqa: E402
from spiral.generation.actions import Candidates, candidate_text  # noqa: E402
from spiral.generation.prefix import plan_prefixes  # noqa: E402
from spiral.model import PromptFormat, add_lora, load_model, load_tokenizer
from spiral.training.learner import Learner  # noqa: E402
from spiral.training.rollout import Turn  # noqa: E402

PATHS = ("old", "free-fp32", "free-bf16", "constrained-fp32", "constrained-bf16")


def make_turns(tokenizer, n: int, style: str, constrained: bool, seed: int = 0) -> list[Turn]:
    """n turns at random information sets with random legal moves (advantages +-1)."""
    rng = random.Random(seed)
    prompts = infoset_prompts()
    fmt = PromptFormat(tokenizer, "auto", style)
    cands = Candidates(tokenizer)
    eos = tokenizer.eos_token_id
    turns = []
    for i in range(n):
        key = rng.choice(KEYS)
        obs, legal = prompts[key]
        choice = rng.randrange(len(legal))
        prompt = fmt.encode([obs])[0]
        if constrained:
            ids = cands.ids(legal[choice])
            turn = Turn(i, "KuhnPoker-v2", len(key) % 2, prompt, ids, [-0.7], candidate_text(legal[choice]),
                        legal, candidates=cands.for_legal(legal), choice=choice)  # fmt: skip
        else:
            ids = cands.ids(legal[choice]) + [eos]
            turn = Turn(i, "KuhnPoker-v2", len(key) % 2, prompt, ids, [-0.1] * len(ids), "", legal)
        turn.advantage = rng.choice([-1.0, 1.0])
        turns.append(turn)
    return turns


def computed_tokens(turns: list[Turn], chunks: list[list[Turn]], constrained: bool) -> int:
    """Tokens the forward passes process: each chunk's shared prefixes once, then rests, answers."""
    total = 0
    for chunk in chunks:
        if constrained:
            distinct = {tuple(t.prompt_ids): t for t in chunk}
            prompts = [list(p) for p in distinct]
            groups, _, cut = plan_prefixes(prompts)
            total += sum(len(g) for g in groups) + sum(len(p) - c for p, c in zip(prompts, cut, strict=True))
            total += sum(len(c) - 1 for t in distinct.values() for c in t.candidates)
        else:
            prompts = [t.prompt_ids for t in chunk]
            groups, _, cut = plan_prefixes(prompts)
            total += sum(len(g) for g in groups) + sum(len(p) - c for p, c in zip(prompts, cut, strict=True))
            total += sum(len(t.response_ids) for t in chunk)
    return total


def chunks_of(learner: Learner, turns: list[Turn], constrained: bool) -> list[list[Turn]]:
    """The micro-batches the learner forms (constrained: every distinct prompt in token-budget chunks)."""
    if constrained:
        from spiral.generation.actions import token_chunks

        distinct = {tuple(t.prompt_ids): t for t in turns}
        prompts = [list(p) for p in distinct]
        ts = list(distinct.values())
        return [[ts[i] for i in c] for c in token_chunks(prompts, learner.s.micro_batch_tokens or 4096)]
    order = sorted(turns, key=lambda t: t.prompt_ids)
    return learner._micro_batches(order)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parser.add_argument("--out", default="docs/results/learner_throughput.md")
    args = parser.parse_args()
    torch.manual_seed(0)
    tok = load_tokenizer("smollm2-135m-instruct")
    base = load_model("smollm2-135m-instruct", tok)
    params = sum(p.numel() for p in base.parameters())
    model = add_lora(base, 16, 32.0, 0.0, ALL_LORA_TARGETS)
    torch.set_num_threads(2)
    probes = {"bf16": gemm_probe(torch.bfloat16) / 1e9, "fp32": gemm_probe(torch.float32) / 1e9}  # GFLOP/s
    setups = {}
    for path in args.paths:
        constrained = path.startswith("constrained")
        style = "paper" if path == "old" else "compact"
        dtype = "bf16" if path.endswith("bf16") else "fp32"
        s = LearnerSettings(lr=1e-9, ppo_epochs=1, micro_batch_size=4, loss_norm=64.0,
                            micro_batch_tokens=0 if path == "old" else 4096)  # fmt: skip
        learner = Learner(model, s, 1.0, dtype, None, share_prefix=True)
        turns = make_turns(tok, args.turns, style, constrained)
        tokens = computed_tokens(turns, chunks_of(learner, turns, constrained), constrained)
        setups[path] = (learner, turns, tokens, 1 if path == "old" else 2, dtype)
    best = dict.fromkeys(setups, float("inf"))
    for _ in range(args.repeats):
        for path, (learner, turns, _tokens, threads, _dtype) in setups.items():
            torch.set_num_threads(threads)
            t0 = time.perf_counter()
            learner.update(turns, 0)
            best[path] = min(best[path], time.perf_counter() - t0)
    torch.set_num_threads(2)
    old = best.get("old")
    rows = []
    for path, (_l, turns, tokens, threads, dtype) in setups.items():
        sec = best[path]
        gflops = 4 * params * tokens / sec / 1e9
        rows.append((path, dtype, threads, len(turns), tokens, sec, len(turns) / sec,
                     (old / sec) if old else float("nan"), gflops, gflops / probes[dtype], gflops / probes["bf16"]))  # fmt: skip
    cpu = platform.processor() or platform.machine()
    flags = Path("/proc/cpuinfo").read_text(errors="ignore") if Path("/proc/cpuinfo").exists() else ""
    isa = "AVX512-BF16" if "avx512_bf16" in flags else "AVX2" if "avx2" in flags else "?"
    lines = [
        "# Learner throughput: SmolLM2-135M-Instruct (LoRA r = 16), one PPO epoch over one-round Kuhn turns",
        "",
        "Command: `python benchmarks/learner_throughput.py " + " ".join(sys.argv[1:]) + "`",
        "",
        f"Machine: {cpu}, {isa}, {torch.get_num_threads()} threads for the probes. GEMM probe (2,048-square "
        f"`torch.matmul`, same run): bf16 {probes['bf16']:.0f} GFLOP/s, fp32 {probes['fp32']:.0f} GFLOP/s.",
        "",
        "| path | dtype | threads | turns | tokens computed | seconds | trained turns/s | x old | learner GFLOP/s "
        "| of same-dtype probe | of bf16 probe |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5]:.2f} | {r[6]:.1f} | {r[7]:.1f}x | "
                     f"{r[8]:.0f} | {100 * r[9]:.0f} % | {100 * r[10]:.0f} % |")  # fmt: skip
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        out = Path(args.out)
        old_text = out.read_text(encoding="utf-8") if out.is_file() else ""
        notes = old_text[old_text.index("\n## Reading") :] if "\n## Reading" in old_text else ""
        out.write_text(text + notes, encoding="utf-8")  # the hand-written reading is kept
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

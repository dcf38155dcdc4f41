"""Learner throughput, today's path and the fast one side by side: trained turns/s, GFLOP/s, a profile.

Usage: python benchmarks/learner_throughput.py [--repeats 2] [--profile] [--out docs/results/learner_throughput.md]

SmolLM2-135M-Instruct with the presets' LoRA (r = 16 on q/k/v/o/gate/up/down) and a KL reference (a frozen copy,
as the moving magnet), one PPO epoch of `spiral.training.learner.Learner` (4,096-token micro-batches, shared
prefixes) over three workloads:
- `kuhn`: 512 constrained one-round Kuhn turns (12 distinct prompts), the step of `kuhn-smollm2-cpu`;
- `tictactoe`: 96 constrained turns from random TicTacToe games (almost every prompt distinct), about the step of
  `tictactoe-smollm2-cpu`;
- `free`: 32 free-form Kuhn turns whose responses are 96 tokens of reasoning text and then the move.
Paths, in one process:
- `old`: the learner before this change: fp32 matmuls, transformers' `sdpa` (keys and values repeated per query
  head), candidates side by side, glibc's default malloc (run first, before `keep_freed_memory`);
- `fp32`: the same fp32 matmuls with the structural changes: grouped-query SDPA, candidates as a prefix tree,
  freed memory kept (spiral.generation.attention, spiral.generation.actions, runkit.memory);
- `frozen-bf16`: plus the frozen-weight bf16 matmuls (spiral.generation.native.frozen, `model.frozen_bf16`).
GFLOP/s counts every matmul and attention FLOP the update really runs (torch.utils.flop_counter), against a bf16
GEMM probe over the learner's own weight shapes (forward and backward layouts, 2,048 rows) in the same run.
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from runkit.memory import keep_freed_memory
from spiral.agents.kuhn import KEYS
from spiral.config import ALL_LORA_TARGETS, LearnerSettings
from spiral.evaluation.exploitability import infoset_prompts
from spiral.games.registry import make
from spiral.generation import actions
from spiral.generation.actions import Candidates, candidate_text
from spiral.generation.native import frozen
from spiral.model import PromptFormat, add_lora, load_model, load_tokenizer, plain_copy
from spiral.training.learner import Learner
from spiral.training.rollout import Turn

PATHS = ("old", "fp32", "frozen-bf16")
WORKLOADS = ("kuhn", "tictactoe", "free")
REASONING = (
    "Let me think step by step. If I hold the king I should bet, since it wins every showdown; with the jack I "
    "check, and with the queen it depends on what my opponent does. The expected value of calling a bet is the "
    "pot I win times the chance that my card is higher, minus the chip I put in, so"
)


def _turn(i, env_id, role, prompt, cands, legal, choice, constrained, eos, rng) -> Turn:
    if constrained:
        ids = cands.ids(legal[choice])
        t = Turn(i, env_id, role, prompt, ids, [-0.7], candidate_text(legal[choice]), legal,
                 candidates=cands.for_legal(legal), choice=choice)  # fmt: skip
    else:
        ids = cands.ids(legal[choice]) + [eos]
        t = Turn(i, env_id, role, prompt, ids, [-0.1] * len(ids), "", legal)
    t.advantage = rng.choice([-1.0, 1.0])
    return t


def kuhn_turns(tok, n: int, constrained: bool = True, think: int = 0, seed: int = 0) -> list[Turn]:
    """n one-round Kuhn turns at random information sets and moves; `think` tokens of reasoning before the move."""
    rng, prompts = random.Random(seed), infoset_prompts()
    fmt, cands = PromptFormat(tok, "auto", "compact"), Candidates(tok)
    words = tok(REASONING, add_special_tokens=False)["input_ids"]
    turns = []
    for i in range(n):
        key = rng.choice(KEYS)
        obs, legal = prompts[key]
        t = _turn(i, "KuhnPoker-v2", len(key) % 2, fmt.encode([obs])[0], cands, legal, rng.randrange(len(legal)),
                  constrained, tok.eos_token_id, rng)  # fmt: skip
        if think:
            k = rng.randrange(len(words) // 2)
            t.response_ids = (words[k:] + words)[:think] + t.response_ids
            t.old_logprobs = [-1.0] * len(t.response_ids)
        turns.append(t)
    return turns


def tictactoe_turns(tok, n: int, seed: int = 0) -> list[Turn]:
    """n constrained turns from random TicTacToe games, every position of each game in order."""
    rng = random.Random(seed)
    fmt, cands = PromptFormat(tok, "auto", "compact"), Candidates(tok)
    turns: list[Turn] = []
    while len(turns) < n:
        env = make("TicTacToe-v0")
        env.reset(seed=rng.randrange(10**6))
        done = False
        while not done and len(turns) < n:
            pid, obs = env.get_observation()
            legal = env.legal_actions()
            c = rng.randrange(len(legal))
            turns.append(_turn(len(turns), "TicTacToe-v0", pid, fmt.encode([obs])[0], cands, legal, c, True,
                               tok.eos_token_id, rng))  # fmt: skip
            done, _ = env.step(legal[c])
    return turns


def workload(tok, name: str, n: int) -> list[Turn]:
    """The n turns of one workload."""
    if name == "kuhn":
        return kuhn_turns(tok, n)
    if name == "tictactoe":
        return tictactoe_turns(tok, n)
    return kuhn_turns(tok, n, constrained=False, think=96)


def gemm_probe(rows: int = 2048, repeats: int = 5) -> float:
    """bf16 FLOP/s of SmolLM2's projection shapes, X·Wᵀ and dY·W, at `rows` rows (the learner's GEMMs)."""
    total_flops, total_time = 0.0, 0.0
    for k, n, count in (
        (576, 576, 2),
        (576, 192, 2),
        (576, 1536, 2),
        (1536, 576, 1),
    ):  # q o | k v | gate up | down
        for a, b in ((torch.randn(rows, k), torch.randn(k, n)), (torch.randn(rows, n), torch.randn(n, k))):
            a, b = a.bfloat16(), b.bfloat16()
            torch.mm(a, b)
            best = min(_timed(lambda a=a, b=b: torch.mm(a, b)) for _ in range(repeats))
            total_flops += count * 2 * a.shape[0] * a.shape[1] * b.shape[1]
            total_time += count * best
    return total_flops / total_time


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def configure(path: str, model, ref) -> None:
    """Switch the process to `path`'s attention, candidate layout and matmuls."""
    impl = "sdpa" if path == "old" else "sdpa_gqa"
    for m in (model, ref):
        m.config._attn_implementation = impl
    actions.SHARE_CANDIDATE_PREFIXES = path != "old"


def run_update(learner: Learner, ref, turns: list[Turn], path: str) -> float:
    """Seconds of one update (the KL reference's cached scores dropped first, as after a magnet move)."""
    learner.set_reference(ref)
    with frozen.set_enabled(path == "frozen-bf16"):
        return _timed(lambda: learner.update(turns, 0))


def count_flops(learner: Learner, ref, turns: list[Turn], path: str) -> float:
    """Matmul and attention FLOPs of one update (forward, backward, reference)."""
    learner.set_reference(ref)
    with frozen.set_enabled(path == "frozen-bf16"), FlopCounterMode(display=False) as counter:
        learner.update(turns, 0)
    return float(counter.get_total_flops())


CATEGORIES = ("frozen-weight matmuls", "LoRA matmuls", "output layer + log-softmax",
              "attention", "casts and copies", "element-wise", "other")  # fmt: skip


def _category(name: str, shapes) -> str:
    dims = {d for s in shapes or [] for d in (s or [])}
    if name in ("aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::matmul"):
        if 49152 in dims:
            return "output layer + log-softmax"
        if 16 in dims:
            return "LoRA matmuls"
        return "frozen-weight matmuls"  # fp32 or bf16: the profiler's events do not say which
    if "log_softmax" in name:
        return "output layer + log-softmax"
    if "scaled_dot_product" in name:
        return "attention"
    if name in ("aten::copy_", "aten::_to_copy", "aten::to", "aten::clone", "aten::contiguous"):
        return "casts and copies"
    if name in ("aten::mul", "aten::add", "aten::add_", "aten::mul_", "aten::silu", "aten::silu_backward",
                "aten::pow", "aten::rsqrt", "aten::mean", "aten::neg", "aten::cat", "aten::div", "aten::sub",
                "aten::exp", "aten::sum", "aten::fill_", "aten::zero_", "aten::where", "aten::index_add"):  # fmt: skip
        return "element-wise"
    return "other"


def profile(learner: Learner, ref, turns: list[Turn], path: str) -> dict[str, float]:
    """Seconds per category of one update (self CPU time of torch.profiler events)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    learner.set_reference(ref)
    with frozen.set_enabled(path == "frozen-bf16"), torch_profile(activities=[ProfilerActivity.CPU],
                                                                   record_shapes=True) as prof:  # fmt: skip
        learner.update(turns, 0)
    out = dict.fromkeys(CATEGORIES, 0.0)
    for ev in prof.key_averages(group_by_input_shape=True):
        cat = _category(ev.key, ev.input_shapes)
        out[cat] += ev.self_cpu_time_total / 1e6
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument(
        "--profile", action="store_true", help="also profile one update (old and frozen-bf16)"
    )
    parser.add_argument("--turns", nargs=3, type=int, default=[512, 96, 32], metavar=("KUHN", "TTT", "FREE"),
                        help="turns of each workload (the presets' steps: 512 Kuhn, ~90 TicTacToe)")  # fmt: skip
    parser.add_argument("--out", default="docs/results/learner_throughput.md")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    tok = load_tokenizer("smollm2-135m-instruct")
    model = add_lora(load_model("smollm2-135m-instruct", tok), 16, 32.0, 0.0, ALL_LORA_TARGETS)
    for name, p in model.named_parameters():  # adapters as after some training, so that gradients reach A too
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.01)
    ref = plain_copy(model, torch.float32)
    s = LearnerSettings(lr=1e-9, ppo_epochs=1, micro_batch_tokens=4096, loss_norm=64.0, entropy_coef=0.3,
                        kl_coef=1.0)  # fmt: skip
    learner = Learner(model, s, 1.0, "fp32", ref, share_prefix=True, frozen_bf16=True)
    learner.optimizer.step = lambda: (
        None
    )  # measure the learner, keep the weights (and so the workloads) fixed
    turns = {
        w: workload(tok, w, n) for w, n in zip(WORKLOADS, args.turns, strict=True) if w in args.workloads
    }
    best: dict[tuple[str, str], float] = {}
    flops: dict[tuple[str, str], float] = {}
    prof: dict[tuple[str, str], dict[str, float]] = {}
    for phase, paths in ((0, ("old",)), (1, ("fp32", "frozen-bf16"))):
        if phase == 1:
            keep_freed_memory()  # what every spiral command now does first
            probe = gemm_probe() / 1e9
        for path in paths:
            configure(path, model, ref)
            for w in args.workloads:
                run_update(learner, ref, turns[w], path)  # warm-up (packs the bf16 weights)
                flops[path, w] = count_flops(learner, ref, turns[w], path)
                best[path, w] = min(run_update(learner, ref, turns[w], path) for _ in range(args.repeats))
                if args.profile and path != "fp32":
                    prof[path, w] = profile(learner, ref, turns[w], path)
                print(f"{w} {path}: {best[path, w]:.2f} s", flush=True)
    write(args, turns, best, flops, prof, probe)
    return 0


def write(args, turns, best, flops, prof, probe) -> None:
    flags = Path("/proc/cpuinfo").read_text(errors="ignore") if Path("/proc/cpuinfo").exists() else ""
    isa = "AMX-BF16" if "amx_bf16" in flags else "AVX512-BF16" if "avx512_bf16" in flags else "AVX2"
    lines = [
        "# Learner throughput: SmolLM2-135M-Instruct (LoRA r = 16, KL reference), one PPO epoch",
        "",
        "Command: `python benchmarks/learner_throughput.py " + " ".join(sys.argv[1:]) + "`",
        "",
        f"Machine: {platform.machine()}, {isa}, 2 threads. bf16 GEMM probe at the learner's weight shapes (2,048 "
        f"rows, forward and backward layouts, same run): {probe:.0f} GFLOP/s.",
        "",
        "| workload | turns | path | seconds | trained turns/s | x old | GFLOP/s | of bf16 probe |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for w in args.workloads:
        n = len(turns[w])
        for path in PATHS:
            sec = best[path, w]
            gf = flops[path, w] / sec / 1e9
            lines.append(f"| {w} | {n} | {path} | {sec:.2f} | {n / sec:.1f} | {best['old', w] / sec:.2f}x | "
                         f"{gf:.0f} | {100 * gf / probe:.0f} % |")  # fmt: skip
    if prof:
        lines += ["", "## Profile: seconds of one update by kind of work (torch.profiler, self CPU time)", "",
                  "| workload | path | " + " | ".join(CATEGORIES) + " | total |",
                  "|---|---|" + "---|" * (len(CATEGORIES) + 1)]  # fmt: skip
        for (path, w), cats in prof.items():
            total = sum(cats.values())
            lines.append(
                f"| {w} | {path} | " + " | ".join(f"{v:.2f}" for v in cats.values()) + f" | {total:.2f} |"
            )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        out = Path(args.out)
        old_text = out.read_text(encoding="utf-8") if out.is_file() else ""
        notes = old_text[old_text.index("\n## Reading") :] if "\n## Reading" in old_text else ""
        out.write_text(text + notes, encoding="utf-8")  # the hand-written reading is kept


if __name__ == "__main__":
    raise SystemExit(main())

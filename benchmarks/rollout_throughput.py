"""Self-play generation throughput of SmolLM2 on Kuhn Poker and TicTacToe against the decode roofline.

Usage: python benchmarks/rollout_throughput.py [--batch-sizes 8 32 64] [--rounds 1] [--max-new-tokens 128]
           [--dtype auto] [--out docs/results/rollout_throughput.md]

B concurrent self-play games (Kuhn and TicTacToe alternating) are played round by round; in each round every
engine generates responses to the same prompts (engines interleaved, their order rotated per round), and the
games move on with the fast engine's responses. Engines: `plain` (Hugging Face `model.generate`, one
left-padded batch), `current` (spiral.generation.hf.HFGenerator), `fast` (spiral.generation.fast.FastGenerator with its native
kernels where they build), `fast-onednn` (the same with oneDNN's bf16 matmuls instead of the native one) and
`fast-torch` (the same engine with the native kernels off). The roofline
comes from GEMM and bandwidth probes run in the same process (benchmarks/roofline.py).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from roofline import Probe, bandwidth_probe, gemm_probe, roofline_tokens_per_s  # noqa: E402
from spiral.agents.lm import stop_ids  # noqa: E402
from spiral.games import make  # noqa: E402
from spiral.generation.base import Generation, Sampling  # noqa: E402
from spiral.generation.fast import FastGenerator  # noqa: E402
from spiral.generation.hf import HFGenerator  # noqa: E402
from spiral.model import PromptFormat, load_model, load_tokenizer, resolve_gen_dtype  # noqa: E402

GAMES = ("KuhnPoker-v2", "TicTacToe-v0")
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


class PlainGenerate:
    """Hugging Face `generate` on one left-padded batch (the baseline; no log-probs)."""

    def __init__(self, model, eos_ids: list[int], pad_id: int, dtype: torch.dtype) -> None:
        self.model = model if dtype == torch.float32 else _copy(model, dtype)
        self.eos_ids, self.pad_id = eos_ids, pad_id

    @torch.inference_mode()
    def generate(self, prompts: list[list[int]], sampling: Sampling) -> Generation:
        B, P = len(prompts), max(len(p) for p in prompts)
        ids = torch.full((B, P), self.pad_id, dtype=torch.long)
        mask = torch.zeros((B, P), dtype=torch.long)
        for b, p in enumerate(prompts):
            ids[b, P - len(p) :] = torch.tensor(p)
            mask[b, P - len(p) :] = 1
        greedy = sampling.temperature == 0
        out = self.model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=sampling.max_new_tokens, do_sample=not greedy,
            temperature=None if greedy else sampling.temperature, top_p=None if greedy else sampling.top_p,
            top_k=None, eos_token_id=self.eos_ids, pad_token_id=self.pad_id,
        )  # fmt: skip
        tokens = []
        for row in out[:, P:].tolist():
            cut = next((i + 1 for i, t in enumerate(row) if t in self.eos_ids), len(row))
            tokens.append(row[:cut])
        return Generation(tokens, [[] for _ in tokens], [len(t) == sampling.max_new_tokens for t in tokens])


def _copy(model, dtype):
    from spiral.model import plain_copy

    return plain_copy(model, dtype)


def play(
    engines: dict, fmt: PromptFormat, tokenizer, B: int, rounds: int, sampling: Sampling, seed: int, shift=0
):
    """Play `rounds` rounds of B concurrent self-play games; per engine (tokens, turns, wall s, CPU s)."""
    games = []
    started = 0

    def start():
        nonlocal started
        env = make(GAMES[started % len(GAMES)])
        env.reset(num_players=2, seed=seed + started)
        started += 1
        return env

    games = [start() for _ in range(B)]
    totals = {name: [0, 0, 0.0, 0.0] for name in engines}
    names = list(engines)
    # Warm-up, not timed: a short generate on the first prompts, so that one-off costs (oneDNN primitive
    # creation per shape, first touches of fresh memory) do not count against the first batch size.
    warm = fmt.encode([g.get_observation()[1] for g in games])
    for name in names:
        engines[name].generate(warm, Sampling(sampling.temperature, sampling.top_p, 8))
        if hasattr(engines[name], "timing"):
            engines[name].timing.update(dict.fromkeys(engines[name].timing, 0))
        if hasattr(engines[name], "clear_prefix_cache"):  # the first timed round computes its prefixes itself
            engines[name].clear_prefix_cache()
    for r in range(rounds):
        prompts = fmt.encode([g.get_observation()[1] for g in games])
        k = (r + shift) % len(names)
        order = names[k:] + names[:k]
        responses = None
        for name in order:
            t0, c0 = time.perf_counter(), time.process_time()
            gen = engines[name].generate(prompts, sampling)
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            totals[name][0] += sum(len(t) for t in gen.tokens)
            totals[name][1] += len(prompts)
            totals[name][2] += dt
            totals[name][3] += dc
            if name == "fast":
                responses = gen
        texts = tokenizer.batch_decode(responses.tokens, skip_special_tokens=True)
        for i, (g, text) in enumerate(zip(games, texts, strict=True)):
            done, _ = g.step(text)
            if done:
                g.close()
                games[i] = start()
    return totals, sum(len(p) for p in prompts) / len(prompts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32, 64])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument(
        "--dtype", default="auto", help="generation dtype: auto (bf16 only with native bf16), bf16, fp32"
    )
    engines = ["plain", "current", "fast-torch", "fast-onednn", "fast"]
    ap.add_argument("--engines", nargs="+", choices=engines, default=engines)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for every engine and probe (0: torch's default); see the results note",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="docs/results/rollout_throughput.md")
    args = ap.parse_args()
    if "fast" not in args.engines:
        ap.error("--engines must include fast (its responses move the games on)")
    torch.manual_seed(args.seed)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    dname = resolve_gen_dtype(args.dtype)
    dtype = DTYPES[dname]

    tok = load_tokenizer("smollm2-135m-instruct")
    model = load_model("smollm2-135m-instruct", tok).eval()
    eos, pad = stop_ids(model, tok), tok.pad_token_id
    fmt = PromptFormat(tok)
    params = sum(p.numel() for p in model.parameters())  # tied embedding counted once
    weight_bytes = params * dtype.itemsize
    probe = Probe(gemm_probe(dtype), bandwidth_probe(), dname)
    print(f"probe: {dname} GEMM {probe.gemm_flops / 1e9:.0f} GFLOP/s, copy {probe.bandwidth / 1e9:.1f} GB/s; "
          f"{params / 1e6:.1f} M params, {weight_bytes / 1e6:.0f} MB weights", flush=True)  # fmt: skip
    sampling = Sampling(args.temperature, 1.0, args.max_new_tokens)

    rows = []
    for bi, B in enumerate(args.batch_sizes):
        load0 = os.getloadavg()[0]
        engines = {}
        for name in args.engines:
            if name == "plain":
                engines[name] = PlainGenerate(model, eos, pad, dtype)
            elif name == "current":
                engines[name] = HFGenerator(model, eos, pad, dtype, batch_size=B, seed=args.seed)
            else:
                t0 = time.perf_counter()
                # fast-torch: the decode step without spiral.generation.native; fast-onednn: the native kernels with
                # oneDNN's matmuls instead of the native one
                native = False if name == "fast-torch" else None
                engines[name] = FastGenerator(
                    model, eos, pad, dtype, batch_size=B, seed=args.seed, native=native,
                    native_gemm=False if name == "fast-onednn" else None,
                )  # fmt: skip
                engines[name].load_weights(model)
                sync_s = (time.perf_counter() - t0) / 2
        totals, prompt_len = play(engines, fmt, tok, B, args.rounds, sampling, args.seed, shift=bi)
        roof = roofline_tokens_per_s(B, params, weight_bytes, probe)
        fast_timing = engines["fast"].timing
        ft = fast_timing
        row = {"B": B, "prompt_len": prompt_len, "roofline": roof, "sync_s": sync_s,
               "load": (load0 + os.getloadavg()[0]) / 2,
               "prefill_share": ft["prefill_s"] / (ft["prefill_s"] + ft["decode_s"]),
               "decode_tps": ft["decode_row_steps"] / max(ft["decode_s"], 1e-9),
               "decode_cpu_tps": ft["decode_row_steps"] / max(ft["decode_cpu_s"], 1e-9),
               "prefix": (ft["prefix_tokens_computed"], ft["prefix_tokens_reused"])}  # fmt: skip
        for name, (n_tok, n_turns, secs, cpu) in totals.items():
            row[name] = (n_tok / secs, n_turns / secs, n_tok / cpu, n_turns / cpu)
        rows.append(row)
        print(_line(row, args.engines), flush=True)

    text = _table(rows, args, probe, params, weight_bytes)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text, encoding="utf-8")
    print(text)


def _line(row: dict, engines: list[str]) -> str:
    parts = [f"B={row['B']}"] + [f"{n}: {row[n][0]:.1f} tok/s ({row[n][2]:.1f} per CPU-s)" for n in engines]
    return "  ".join(parts) + f"  roofline {row['roofline']:.0f} tok/s  load {row['load']:.1f}"


def _table(rows: list[dict], args, probe: Probe, params: int, weight_bytes: int) -> str:
    engines = args.engines
    cmd = "python benchmarks/rollout_throughput.py " + " ".join(sys.argv[1:])
    head = ["games B", "prompt tokens", "load avg"]
    head += [f"{n} tok/s wall / CPU" for n in engines] + [f"{n} turns/s wall / CPU" for n in engines]
    head += [
        "fast / roofline wall / CPU",
        "fast decode-only tok/s / roofline",
        "fast prefill share",
        "fast prefix tokens computed / reused",
    ]
    head += [f"fast / {n} wall / CPU" for n in engines if n != "fast"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["B"]), f"{r['prompt_len']:.0f}", f"{r['load']:.1f}"]
        cells += [f"{r[n][0]:.1f} / {r[n][2]:.1f}" for n in engines]
        cells += [f"{r[n][1]:.2f} / {r[n][3]:.2f}" for n in engines]
        f, roof = r["fast"], r["roofline"]
        cells += [f"{f[0] / roof:.0%} / {f[2] / roof:.0%}", f"{r['decode_tps']:.1f} = {r['decode_tps'] / roof:.0%}",
                  f"{r['prefill_share']:.0%}", f"{r['prefix'][0]} / {r['prefix'][1]}"]  # fmt: skip
        cells += [f"{f[0] / r[n][0]:.2f}x / {f[2] / r[n][2]:.2f}x" for n in engines if n != "fast"]
        lines.append("| " + " | ".join(cells) + " |")
    roof = ", ".join(f"B={r['B']}: {r['roofline']:.0f}" for r in rows)
    sync = sum(r["sync_s"] for r in rows) / len(rows)
    return "\n".join([
        "# Rollout throughput: self-play generation vs the decode roofline",
        "",
        f"Command: `{cmd}`",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch thread(s) for every engine and probe; load average while measuring in "
        "the load column (this process alone gives about its thread count; more means other jobs shared the cores).",
        f"Probes (same run, best of 5): GEMM {probe.gemm_flops / 1e9:.0f} GFLOP/s ({probe.dtype}, 2048^3), copy "
        f"{probe.bandwidth / 1e9:.1f} GB/s; SmolLM2-135M-Instruct {params / 1e6:.1f} M parameters, "
        f"{weight_bytes / 1e6:.0f} MB of weights in {probe.dtype}.",
        f"Roofline(B) = min(B x bandwidth / weight bytes, GEMM FLOP/s / (2 x parameters)) tokens/s: {roof}.",
        f"Weight sync of the fast engine (`load_weights`, repacking every weight): {sync:.2f} s.",
        "",
        f"Sampling: temperature {args.temperature}, top_p 1, max_new_tokens {args.max_new_tokens}; "
        f"{args.rounds} round(s) of B concurrent games (Kuhn Poker v2 and TicTacToe alternating), every engine "
        "on the same prompts each round, engines interleaved in rotating order, each warmed up first by an untimed "
        "8-token generate. tok/s and turns/s are end to end "
        "per generate call (prefill included), per wall-clock second and per CPU second of this process (CPU time "
        "sums its threads: with one thread it is the time the process actually ran, which discounts other jobs' "
        "share of a busy machine; with T threads multiply the CPU rate by T to compare it with the wall rate). "
        "The probes take the best of 5 and so approximate unshared cores. 'decode-only' counts the fast "
        "engine's decode steps alone, per wall second. The fast engine keeps the K/V of shared prompt prefixes "
        "across calls until its weights change (cleared after the warm-up, so the first round computes them); "
        "'prefix tokens' counts the prefix tokens it computed and the ones it reused, over all rounds.",
        "",
        *lines,
        "",
    ])  # fmt: skip


if __name__ == "__main__":
    main()

"""A decode step's matmuls in bf16: the native packed matmul (spiral.generation.native) against oneDNN's prepacked one.

Usage: python benchmarks/decode_matmuls.py [--rows 8 32 64 128 512] [--repeats 7] [--threads 2]
           [--out docs/results/decode_matmuls.md]

SmolLM2-135M's shapes (30 layers: QKV 960x576, O 576x576, gate/up 3072x576, down 576x1536; lm_head 49152x576)
with random bf16 weights, a separate copy per layer as in the model, so that each step streams all 269 MB from
memory as a decode step does (they do not fit the cache). One "step" runs every layer's four matmuls and the
lm_head on `rows` rows; both implementations alternate, and the table gives the median of `--repeats` steps
each, and GFLOP/s (2 x rows x parameters per step). Needs the native kernels with AVX512-BF16 (skipped
without them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from spiral.generation import native  # noqa: E402
from spiral.generation.fast import linear, pack_linear  # noqa: E402

C, F, LAYERS, VOCAB = 576, 1536, 30, 49152
SHAPES = [(960, C), (C, C), (2 * F, C), (C, F)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[8, 32, 64, 128, 512])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="docs/results/decode_matmuls.md")
    args = ap.parse_args()
    if min(args.rows) < 1 or args.repeats < 1 or args.threads < 1:
        ap.error("--rows, --repeats and --threads must be positive")
    kernels = native.load()
    if kernels is None or not kernels.has_gemm:
        # nothing to compare on this CPU: not an error (`make bench` goes on)
        print(f"skipped: the native bf16 matmul is not available here ({native.error or 'no AVX512-BF16'})")
        return
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    plain = [[(torch.randn(n, k, generator=g) * 0.05).bfloat16() for n, k in SHAPES] for _ in range(LAYERS)]
    head = (torch.randn(VOCAB, C, generator=g) * 0.05).bfloat16()
    every = [w for ws in plain for w in ws] + [head]  # a step's weights in order
    weights = {
        "oneDNN": [(pack_linear(w), w.shape[1]) for w in every],
        "native": [(kernels.pack(w), w.shape[1]) for w in every],
    }
    del plain, head, every
    params = LAYERS * sum(n * k for n, k in SHAPES) + VOCAB * C
    rows_out = []
    for m in args.rows:
        xs = {k: torch.randn(m, k, generator=g).bfloat16() for k in (C, F)}
        times = {name: [] for name in weights}
        for r in range(args.repeats + 1):  # the first round warms up (oneDNN primitives, first touches)
            for name in weights if r % 2 else reversed(list(weights)):
                t0 = time.perf_counter()
                for w, k in weights[name]:
                    linear(xs[k], w)
                if r:
                    times[name].append(time.perf_counter() - t0)
        med = {name: statistics.median(t) for name, t in times.items()}
        rows_out.append((m, med["oneDNN"], med["native"], 2 * m * params))
        print(
            f"rows {m}: oneDNN {med['oneDNN'] * 1e3:.1f} ms, native {med['native'] * 1e3:.1f} ms", flush=True
        )
    cmd = " ".join(["python benchmarks/decode_matmuls.py", *sys.argv[1:]])
    lines = [
        "# A decode step's matmuls: native bf16 matmul vs oneDNN",
        "",
        f"Command: `{cmd}`",
        "",
        f"Machine: {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} thread(s). SmolLM2-135M's "
        f"shapes, a separate random bf16 weight per layer ({params * 2 / 1e6:.0f} MB streamed per step); median "
        f"of {args.repeats} steps each, the two alternating.",
        "",
        "| rows | oneDNN ms | native ms | oneDNN GFLOP/s | native GFLOP/s | native speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for m, a, b, flop in rows_out:
        lines.append(
            f"| {m} | {a * 1e3:.1f} | {b * 1e3:.1f} | {flop / a / 1e9:.0f} | {flop / b / 1e9:.0f} | {a / b:.2f}x |"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.out).with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(args.out)
    print("\n".join(lines))


if __name__ == "__main__":
    main()

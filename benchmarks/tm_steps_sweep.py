"""Sweep sampling steps of trained `tm` runs: W2 and wall time per 1,000 samples, side by side.

    python benchmarks/tm_steps_sweep.py runs/tm/fm-2d runs/tm/dtm-2d [--n 1000] [--out table.md]

FM sweeps its ODE steps; DTM sweeps T x head steps; ARTM/FHTM run at their trained T with several head steps.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

GRID = {
    "fm": [(s, 1) for s in (4, 8, 16, 32, 64, 128, 256)],
    "dtm": [(T, S) for T in (1, 2, 4, 8, 16, 32) for S in (1, 4, 16)],
}


def main() -> int:
    import torch

    from runkit.io import atomic_write_text
    from transition_matching.evaluation import evaluate
    from transition_matching.runs import load_run, sample_options

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--out", help="also write the table (markdown) here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    lines = ["| run | method | T / steps | head steps | backbone evals | head evals | W2 | energy | s / 1000 |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for path in args.runs:
        loaded = load_run(path)
        m = loaded.config.method
        grid = GRID.get(m) or [(loaded.method.T, s) for s in (1, 4, 16)]
        for T, S in grid:
            r = evaluate(loaded, args.n, sample_options(loaded, steps=T, head_steps=S))
            row = f"| {Path(path).name} | {m} | {T} | {S if m != 'fm' else '-'} | {r['backbone_evals']} | "
            row += f"{r['head_evals']} | {r['w2']:.3f} | {r['energy']:.4f} | {r['seconds_per_1000']:.2f} |"
            lines.append(row)
            print(row, flush=True)
    if args.out:
        cmd = "python benchmarks/tm_steps_sweep.py " + " ".join(sys.argv[1:])
        atomic_write_text(args.out, f"# TM sampling sweep\n\n`{cmd}`\n\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

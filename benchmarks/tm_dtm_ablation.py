"""DTM ablation on digits: which levers bring DTM 16x4 to flow matching's image quality at equal training compute.

    python benchmarks/tm_dtm_ablation.py                  # the full ablation: 7 models x 3 seeds, 4x the paper budget
    python benchmarks/tm_dtm_ablation.py --quick          # smoke-sized: 150 FM steps, 1 seed (< 10 min on 2 cores)
    python benchmarks/tm_dtm_ablation.py --estimate-only  # calibrate (about a minute) and print the time estimate
    python benchmarks/tm_dtm_ablation.py --seeds 0        # a part; a later invocation adds the other seeds
    python benchmarks/tm_dtm_ablation.py --report-only    # rewrite the page from the stored rows
    python benchmarks/tm_dtm_ablation.py --scale 1        # the paper mode's budget instead (a record of its own)
    python benchmarks/tm_dtm_ablation.py --part mnist     # follow-up: the recipe against FM on MNIST 28x28
    python benchmarks/tm_dtm_ablation.py --part causal    # follow-up: ARTM and FHTM against FM on digits

DTM 16x4 in the paper's regime (configs/tm/dtm-digits-paper.toml) with one lever at a time: head_draws 4,
logit-normal t and s, the paper's head shape (6 residual blocks) at about 2 % of the backbone's parameters, the
stochastic head sampler sde (sampling only: evaluated on the baseline model and on the combination), then all of
them. References: FM with 128 and 256 Euler steps, trained with uniform and with logit-normal t. Every model
trains the same compute (seconds per step calibrated once and stored under the run folder; a dearer step gets
fewer steps), 3 seeds, cFID measured while training. Resumable per cell (data, seed, model): finished cells are kept in the JSON and in their run folders
(runs/bench/tm_dtm_ablation[_quick]/digits/seed<s>/<model>/) and skipped. Writes
docs/results/tm_dtm_ablation[_quick].{md,json} and ..._curves.png; the page's verdict is computed from the table.

The follow-ups use the levers' recipe (head_draws 4, logit-normal s, and t for DTM and FM, the 6-block head, the sde
head sampler). `--part mnist`: FM (uniform and logit-normal t) and DTM 16x4 with the recipe on MNIST 28x28
(configs/tm/dtm-mnist-paper.toml), with sample grids; runs under runs/bench/tm_dtm_ablation_mnist, page
tm_dtm_ablation_mnist.md. `--part causal`: ARTM-3 and FHTM-3, plain and with the recipe's head levers, against FM
on digits; it trains in the levers' run folder, so FM's runs are reused; page tm_dtm_ablation_causal.md.
"""

# A thin command line over transition_matching.study.ablation.

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from runkit.errors import UserError
from transition_matching.study.ablation import (
    HEAD_SHARE,
    PARTS,
    SCALE,
    SDE,
    build_mode,
    mode_name_of,
    root_name_of,
    run_ablation,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--part", choices=list(PARTS), default="levers",
        help="levers: the ablation; mnist, causal: the follow-ups with its recipe [levers]",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="1 seed, 150 FM steps, fewer samples (< 10 min)")
    parser.add_argument(
        "--estimate-only",
        action="store_true",
        help="calibrate, print the equal-compute steps and time estimate",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="only rewrite the page from the stored cells"
    )
    parser.add_argument("--seeds", nargs="+", type=int, help="override the seeds [0 1 2; --quick: 0]")
    parser.add_argument(
        "--scale", type=int, default=SCALE,
        help=f"FM budget in multiples of the paper mode's 1,200 digits steps [{SCALE}]",
    )  # fmt: skip
    parser.add_argument(
        "--head-share",
        type=float,
        default=HEAD_SHARE,
        help=f"the head lever's parameter share [{HEAD_SHARE}]",
    )
    parser.add_argument("--sde", default=SDE, help=f"the stochastic head sampler, sde or sde:ETA [{SDE}]")
    parser.add_argument(
        "--jobs", type=int, default=2, help="worker processes of one thread each (1: in-process) [2]"
    )
    parser.add_argument("--root", help="folder of the trained runs [runs/bench/tm_dtm_ablation[_quick]]")
    parser.add_argument("--out", default=str(RESULTS), help="folder for the .md, .json and .png results")
    parser.add_argument("--fresh", action="store_true", help="start a new record (trained runs are reused)")
    parser.add_argument(
        "--note", default="", help="a remark on the machine's load, stored with this invocation"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.scale < 1 or not 0 < args.head_share < 1:
        raise SystemExit("--scale must be >= 1 and --head-share in (0, 1)")
    name = mode_name_of(args.quick, args.scale, args.part)
    root = Path(args.root or ROOT / "runs" / "bench" / root_name_of(args.quick, args.scale, args.part))
    command = shlex.join(
        ["python", "benchmarks/tm_dtm_ablation.py", *(sys.argv[1:] if argv is None else argv)]
    )
    try:
        mode = build_mode(args.quick, args.scale, args.head_share, args.sde, part=args.part)
    except UserError as e:
        raise SystemExit(f"tm_dtm_ablation: error: {e}") from None
    run_ablation(
        Path(args.out), root, mode, name, seeds=args.seeds, jobs=args.jobs, fresh=args.fresh, note=args.note,
        command=command, report_only=args.report_only, estimate_only=args.estimate_only,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

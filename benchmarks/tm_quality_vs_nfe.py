"""Transition Matching evidence: sample quality against backbone evaluations and sampling wall time.

    python benchmarks/tm_quality_vs_nfe.py            # default grid: 3 seeds, checkerboard, 8 gaussians, digits
    python benchmarks/tm_quality_vs_nfe.py --quick    # smoke-sized: 1 seed, short training, smaller grid
    python benchmarks/tm_quality_vs_nfe.py --data digits --seeds 1 2 --methods artm fhtm   # a part of the grid
    python benchmarks/tm_quality_vs_nfe.py --data mnist14 --seeds 0      # optional: MNIST-5k at 14x14
    python benchmarks/tm_quality_vs_nfe.py --report-only                 # rewrite the page from the JSON
    python benchmarks/tm_quality_vs_nfe.py --paper    # the paper's regime (configs/tm/*-paper.toml), equal compute
    python benchmarks/tm_quality_vs_nfe.py --paper --quick               # its smoke-sized version (< 10 min)
    python benchmarks/tm_quality_vs_nfe.py --paper --estimate-only       # calibrate and print the time estimate
    python benchmarks/tm_quality_vs_nfe.py --paper --long     # 4x the training compute, checkerboard and digits

Every method trains the same transformer backbone for the same number of optimizer steps (training seconds are
recorded; an extra FM run, `fm-eqtime`, trains for as many steps as fit in DTM's training seconds at FM's
measured rate). One DTM model (continuous time) serves the whole T x head-steps grid; FM serves every Euler step
count; ARTM/FHTM train one model per T (T = 3 uses the paper's schedule 0, .5, .75, 1).

Resumable: the unit of work is a cell (data set, seed, model). The raw rows of every finished cell are kept in
docs/results/tm_quality_vs_nfe[_quick].json and in the run folder (<root>/<data>/seed<s>/<model>/bench_eval.json);
a run skips every cell already present in either (with the same settings) and merges the new rows into the JSON,
so a stopped run continues where it stopped and a part of the grid can be added later. --fresh starts a new JSON
(trained runs are still reused). Sampling of the new cells of one data set and seed runs in one process,
interleaved in a shuffled order, and the reported time is the fastest of the timed draws.
Writes docs/results/tm_quality_vs_nfe[_quick].{md,json} and docs/results/tm_quality_vs_nfe[_quick]_<data>.png.

--paper: the paper's cost regime. The backbone (configs/tm/*-paper.toml: a 512 x 4 MLP on 2D, a 256 x 6
transformer on images) costs >= 20x a step of the 64 x 2 head per token; every model trains for the same compute
(steps x seconds per step, calibrated once per data set and stored under the run folder), FM and DTM are evaluated
while they train (quality vs steps), W2 on 2,000 vs 2,000 points beside the data-vs-data floor, an independent
CNN's accuracy beside cFID on images, and MNIST 28x28 (one seed, FM and DTM) with sample grids. The default grid
is FM K = 4..256 and DTM T x S for T in 4..32 and S in 1, 4, 16 on checkerboard, 8 gaussians and digits (3
seeds) and MNIST; add ARTM/FHTM (T = 1, 2, 3, first seed) with --methods fm dtm artm fhtm. The time estimate is
printed before anything trains (estimated 54 min on 2 idle cores; ARTM/FHTM add about 25 min). Writes
docs/results/tm_quality_vs_nfe_paper[_quick].*.
"""

# A thin command line over transition_matching.study (the plan, workers, aggregation and page live there).

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from transition_matching.study.plan import DATA, DATA_PAPER, DEFAULT_DATA, METHODS, MODES, STUDY, suffix_of
from transition_matching.study.runner import run_study

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="1 seed, short training, smaller grid (< 10 min)"
    )
    parser.add_argument(
        "--paper", action="store_true", help="the paper's cost regime at equal training compute (see above)"
    )
    parser.add_argument(
        "--long", action="store_true",
        help="--paper: every model trains 4x the compute, on checkerboard and digits (is DTM's gap convergence?)",
    )  # fmt: skip
    parser.add_argument("--mode", choices=list(MODES), default="full", help=argparse.SUPPRESS)
    parser.add_argument("--data", "--datasets", nargs="+", choices=list(dict.fromkeys([*DATA, *DATA_PAPER])),
                        help=f"data sets [{' '.join(DEFAULT_DATA)}; --paper: also mnist]; mnist14 (MNIST-5k at "
                             "14x14) is optional")  # fmt: skip
    parser.add_argument("--seeds", nargs="+", type=int, help="override the seeds of the mode")
    parser.add_argument("--methods", nargs="+", choices=METHODS, help="models to run [all; --paper: fm dtm]")
    parser.add_argument(
        "--jobs", type=int, default=2, help="worker processes of one thread each (1: in-process) [2]"
    )
    parser.add_argument("--root", help="folder of the trained runs [runs/bench/tm_quality_vs_nfe[_quick]]")
    parser.add_argument("--out", default=str(RESULTS), help="folder for the .md, .json and .png results")
    parser.add_argument("--no-eqtime", action="store_true", help="skip the equal-wall-time FM run")
    parser.add_argument(
        "--ar-seeds", type=int, help="train ARTM/FHTM only for the first N seeds (saves time)"
    )
    parser.add_argument(
        "--fresh", action="store_true", help="start a new JSON instead of adding to the old one"
    )
    parser.add_argument(
        "--note", default="", help="a remark on the machine's load, stored with this invocation"
    )
    parser.add_argument(
        "--report-only", action="store_true", help="only rewrite the page from the stored cells"
    )
    parser.add_argument(
        "--estimate-only", action="store_true", help="--paper: calibrate, print the time estimate and stop"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.long and (args.quick or not args.paper):
        raise SystemExit("--long goes with --paper and without --quick")
    mode_name = (
        ("paper_quick" if args.quick else "paper_long" if args.long else "paper")
        if args.paper
        else "quick"
        if args.quick
        else args.mode
    )
    root = Path(args.root or ROOT / "runs" / "bench" / f"{STUDY}{suffix_of(mode_name)}")
    command = shlex.join(
        ["python", "benchmarks/tm_quality_vs_nfe.py", *(sys.argv[1:] if argv is None else argv)]
    )
    run_study(
        mode_name, Path(args.out), root, datasets=args.data, seeds=args.seeds, methods=args.methods, jobs=args.jobs,
        eqtime=not args.no_eqtime, ar_seeds=args.ar_seeds, fresh=args.fresh, note=args.note,
        report_only=args.report_only, command=command, estimate_only=args.estimate_only,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

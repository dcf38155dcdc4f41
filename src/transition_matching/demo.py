"""A short end-to-end demo: DTM and FM on 8 gaussians and on digits; metrics, plots and reports per run.

Run it with `python -m transition_matching.demo --out runs/demo/tm` or `tm demo`.
"""

from __future__ import annotations

import argparse
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

# Sizes chosen to finish in about 3 minutes on 2 CPU cores shared with other jobs (measured numbers in docs/transition_matching.md).
DEMO_RUNS = {
    "fm-8gaussians": {"method": "fm", "data": "8gaussians", "steps": 1200},
    "dtm-8gaussians": {"method": "dtm", "data": "8gaussians", "steps": 1200},
    "fm-digits": {"method": "fm", "data": "digits", "steps": 1200, "patch": 4, "width": 64, "depth": 3},
    "dtm-digits": {
        "method": "dtm", "data": "digits", "steps": 1200, "patch": 4, "width": 64, "depth": 3,
        "head_width": 96, "head_depth": 2,
    },
}  # fmt: skip
COMMON = {
    "batch_size": 128,
    "lr": 2e-3,
    "warmup": 100,
    "ckpt_every": 500,
    "log_every": 50,
    "n_points": 20_000,
}
EVAL = {
    "8gaussians": {"n": 2000, "steps": {"fm": 32, "dtm": 16}},
    "digits": {"n": 1000, "steps": {"fm": 32, "dtm": 16}},
}


@dataclass
class DemoRun:
    """One finished demo run: its folder, metrics and timings."""

    name: str
    path: Path
    results: dict
    train_seconds: float
    total_seconds: float


def run_one(name: str, settings: dict, root: Path, progress: bool, eval_n: int | None = None) -> DemoRun:
    """Train, evaluate, plot and write the report of one demo run."""
    from runkit.rundir import create_run_dir, is_run_of
    from transition_matching.config import make_config, resolve
    from transition_matching.evaluation import evaluate, write_eval
    from transition_matching.report import make_plots, write_run_report
    from transition_matching.runs import load_run, sample_options
    from transition_matching.trainer import config_dict, load_training_data, train

    t0 = time.time()
    cfg = make_config(**{**COMMON, **settings})
    data = load_training_data(cfg)
    cfg = resolve(cfg, data.n_tokens)
    path = root / name
    if is_run_of(path, "tm"):  # an earlier demo run is replaced; any other non-empty folder is refused
        shutil.rmtree(path, ignore_errors=True)
    run = create_run_dir(path, config_dict(cfg), kind="tm")
    result = train(cfg, run, progress=progress, data=data)
    loaded = load_run(path)
    ev = EVAL[cfg.data]
    opts = sample_options(loaded, steps=ev["steps"][cfg.method], head_steps=4)
    n = eval_n or ev["n"]
    results = evaluate(loaded, n, opts)
    results["train_seconds"] = result.seconds
    write_eval(loaded, results)
    make_plots(loaded, opts, n=min(n, 1000))
    write_run_report(loaded)
    return DemoRun(name, path, results, result.seconds, time.time() - t0)


def write_summary(root: Path, runs: list[DemoRun], seconds: float) -> Path:
    """An index page comparing the demo runs."""
    from runkit.report import table_html, write_report

    keys = [
        "method",
        "data",
        "steps",
        "head_steps",
        "backbone_evals",
        "head_evals",
        "w2",
        "sliced_w2",
        "energy",
    ]
    keys += ["mmd", "nn_ratio", "cfid", "class_acc", "seconds_per_1000", "train_seconds"]
    rows = [{"run": r.name, **{k: r.results.get(k, "") for k in keys}} for r in runs]
    links = "".join(f'<li><a href="{r.name}/report.html">{r.name}</a></li>' for r in runs)
    sections = [
        ("Runs", table_html(rows)),
        ("Reports", f"<ul>{links}</ul>"),
        ("Time", f"<p>{seconds:.0f} s</p>"),
    ]
    return write_report(root / "report.html", "Transition Matching demo", sections)


def main(argv: list[str] | None = None) -> int:
    """Run the demo; prints where the reports are."""
    parser = argparse.ArgumentParser(prog="python -m transition_matching.demo", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo/tm", help="folder for the demo runs [runs/demo/tm]")
    parser.add_argument("--only", nargs="*", choices=list(DEMO_RUNS), help="run only these demo runs")
    parser.add_argument("--steps", type=int, help="override the training steps of every run (smoke tests)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--eval-n", type=int, help="override the number of samples evaluated (smoke tests)")
    parser.add_argument("--jobs", type=int, default=2, help="runs trained at once, one CPU thread each [2]")


def _report_line(r: DemoRun) -> str:
    w = r.results
    extra = f" cFID {w['cfid']:.2f} acc {w['class_acc']:.2f}" if "cfid" in w else ""
    return (
        f"{r.name}: W2 {w['w2']:.3f}{extra}, trained in {r.train_seconds:.0f} s, done in {r.total_seconds:.0f} s"
        f" -> {r.path / 'report.html'}"
    )


def _one_thread_run(name: str, settings: dict, root: Path, progress: bool, eval_n: int | None) -> DemoRun:
    import torch

    torch.set_num_threads(1)
    return run_one(name, settings, root, progress, eval_n)


def run(args: argparse.Namespace) -> int:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from runkit.errors import UserError

    if args.jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {args.jobs}")
    root = Path(args.out)
    t0 = time.time()
    names = args.only or list(DEMO_RUNS)
    tasks = {n: {**DEMO_RUNS[n], **({"steps": args.steps} if args.steps else {})} for n in names}
    runs: dict[str, DemoRun] = {}
    if args.jobs == 1:
        for name, settings in tasks.items():
            runs[name] = _one_thread_run(name, settings, root, not args.no_progress, args.eval_n)
            print(_report_line(runs[name]), flush=True)
    else:  # the slowest runs first; bars would interleave, so workers print one line each when done
        order = sorted(tasks, key=lambda n: (tasks[n]["method"] != "dtm", tasks[n]["data"] != "digits"))
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=ctx) as pool:
            futures = {pool.submit(_one_thread_run, n, tasks[n], root, False, args.eval_n): n for n in order}
            for fut in as_completed(futures):
                r = fut.result()
                runs[r.name] = r
                print(_report_line(r), flush=True)
    summary = write_summary(root, [runs[n] for n in names], time.time() - t0)
    print(f"TM demo finished in {time.time() - t0:.0f} s; summary report: {summary}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

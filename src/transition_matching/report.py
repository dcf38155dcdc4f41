"""Plots of a run into plots/ and a self-contained report.html (config, metrics, plots)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from runkit.io import read_json
from runkit.metrics import read_metrics
from runkit.report import image_html, table_html, write_report
from transition_matching import plots
from transition_matching.data import TOYS, reference_set
from transition_matching.methods import SampleOptions
from transition_matching.runs import LoadedRun, default_labels, draw_samples


def make_plots(loaded: LoadedRun, opts: SampleOptions, n: int = 2000, seed: int = 0) -> list[Path]:
    """Write the run's plots: scatter/density/trajectories for points, grids per class and X_t strips for images."""
    data, out, cfg = loaded.data, loaded.run.plots, loaded.config
    traj_opts = SampleOptions(**{**opts.__dict__, "trajectory": True})
    paths = [plots.loss_curve(read_metrics(loaded.run.metrics), out / "loss.png")]
    if not data.is_image:
        s = draw_samples(loaded, n, traj_opts, default_labels(loaded, n), seed)
        ref = reference_set(data, cfg.data, n) if cfg.data in TOYS else data.flat_raw()[:n]
        if s.raw.shape[1] == 2:
            traj = np.stack([data.flat_raw(x) for x in s.trajectory])  # (steps+1, N, 2)
            title = f"{cfg.method} T={opts.steps}"
            paths.append(plots.scatter_2d(s.raw, ref, out / "scatter.png", title))
            paths.append(plots.density_2d(s.raw, out / "density.png"))
            paths.append(plots.trajectories_2d(traj, out / "trajectories.png"))
        return paths
    H, W, C = data.image_shape
    lo, hi = data.scaler.decode(np.array([-1.0, 1.0]))
    k = max(1, data.num_classes)
    per = 10
    labels = torch.arange(k).repeat_interleave(per) if data.num_classes else None
    s = draw_samples(loaded, k * per, traj_opts, labels, seed)
    grid = f"{cfg.method}, {opts.steps} steps" + (
        "" if cfg.method == "fm" else f" x {opts.head_steps} head steps"
    )
    paths.append(plots.image_grid(s.raw, out / "samples.png", k, grid, lo, hi))
    if opts.cfg == 1.0 and data.num_classes:
        g = draw_samples(loaded, k * per, SampleOptions(**{**opts.__dict__, "cfg": 2.0}), labels, seed)
        paths.append(plots.image_grid(g.raw, out / "samples_cfg2.png", k, grid + ", cfg 2", lo, hi))
    idx = np.linspace(0, s.trajectory.shape[0] - 1, min(9, s.trajectory.shape[0])).round().astype(int)
    rows = [s.trajectory[i, ::per][:8] for i in idx]  # (len(idx), <=8, n, d): one sample per class
    strip = np.stack([data.to_raw(r) for r in rows], 1).reshape(-1, H, W, C)  # sample-major
    paths.append(plots.image_grid(strip, out / "trajectories.png", min(8, k), "X_0 -> X_T", lo, hi))
    return paths


def write_run_report(loaded: LoadedRun) -> Path:
    """report.html from config.json, eval.json (if any), metrics.jsonl and the PNGs in plots/."""
    run = loaded.run
    cfg = run.read_config()
    sections = [("Config", table_html([{"setting": k, "value": v} for k, v in cfg.items()]))]
    if (run.path / "eval.json").exists():
        results = read_json(run.path / "eval.json")
        sections.append(("Evaluation", table_html([{"metric": k, "value": v} for k, v in results.items()])))
    rows = read_metrics(run.metrics)
    if rows:
        last = rows[-1]
        sections.append(("Training (last log)", table_html([{k: v for k, v in last.items() if k != "time"}])))
    images = "".join(image_html(p, p.stem) for p in sorted(run.plots.glob("*.png")))
    sections.append(("Plots", images or "<p>no plots yet: run `tm plot`</p>"))
    title = f"TM run: {loaded.config.method} on {loaded.config.data} (step {loaded.step})"
    return write_report(run.report, title, sections)

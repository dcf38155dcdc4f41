"""The study's results page: markdown tables, headline bullets, plots, and the JSON of raw rows."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from transition_matching.study.aggregate import TOL, aggregate, cost_fit, key_numbers, median
from transition_matching.study.plan import (
    METHODS,
    MODES,
    STUDY,
    cells_of,
    data_settings,
    default_datasets,
    json_path,
    n_eval_of,
    plan_cells,
    specs_of,
    suffix_of,
)


def fmt(a: dict, k: str) -> str:
    return f"{a[k]:.3f} ± {a[k + '_std']:.3f}"


def label(a: dict) -> str:
    if a["method"] == "fm":
        return f"{a['model'].upper()} {a['steps']}"
    if a["method"] == "dtm":
        return f"DTM {a['steps']}x{a['head_steps']}"
    return f"{a['method'].upper()}-{a['steps']} x{a['head_steps']}"


def markdown_table(agg: list[dict], metrics: tuple[str, ...], floor: dict | None = None) -> str:
    """The per-configuration table of one data set; with `floor`, a first row of the metrics of data vs data."""
    cost = cost_fit(agg)
    head = "| config | seeds | backbone evals | head evals | " + " | ".join(metrics)
    head += " | s / 1000 samples (measured) | s / 1000 (cost model) |"
    lines = [head, "|" + "---|" * (6 + len(metrics))]
    if floor:
        vals = " | ".join(f"{floor[k]:.3f}" if k in floor else "-" for k in metrics)
        lines.append(
            f"| data vs data ({floor['n']} vs {floor['n']}, the floor) | - | 0 | 0 | {vals} | - | - |"
        )
    for a in agg:
        ms = " | ".join(fmt(a, k) for k in metrics)
        lines.append(
            f"| {label(a)} | {a['seeds']} | {a['backbone_evals']} | {a['head_evals']} | {ms} | {a['seconds_per_1000']:.3f} | "
            f"{model_seconds(a, cost):.3f} |"
        )
    return "\n".join(lines)


def model_seconds(a: dict, cost: tuple[float, float]) -> float:
    """Seconds per 1,000 samples the cost model (one backbone pass, one head pass) gives configuration `a`."""
    return cost[0] * a["backbone_evals"] + cost[1] * a["head_evals"]


def key_lines(key: dict, metric: str, cost: tuple[float, float] | None = None) -> list[str]:
    """The headline comparison of one data set as markdown bullets; `cost` (seconds of one backbone and one head
    pass per 1,000 samples) adds the speed-up the cost model predicts beside each measured one."""
    ref = key["fm_ref"]
    lines = []
    for k, chk in key.get("spread", {}).items():
        if chk is None:
            continue
        fm, d = chk["ref"], chk["dtm"]
        if d is None:
            lines.append(f"- **Seed-spread check, FM {k}** ({metric} {fmt(fm, metric)}): no DTM configuration is "
                         f"within the seed spread (worse by at most sqrt(std_DTM^2 + std_FM^2)).")  # fmt: skip
            continue
        pred = ""
        if cost is not None:
            pred = f"; the cost model predicts {model_seconds(fm, cost) / model_seconds(d, cost):.1f}x"
        lines.append(f"- **Seed-spread check, FM {k}** ({metric} {fmt(fm, metric)}): the fastest DTM within the seed "
                     f"spread is {label(d)} ({metric} {fmt(d, metric)}), {chk['speedup']:.1f}x less wall time measured"
                     f"{pred}.")  # fmt: skip
    for title, a in (("FM reference", ref), ("DTM best", key["dtm_best"]), ("DTM 16x4", key["dtm_16x4"])):
        if a is None:
            continue
        ratio = ref["seconds_per_1000"] / a["seconds_per_1000"]
        lines.append(f"- {title}: {label(a)}: {metric} {fmt(a, metric)}, {a['backbone_evals']} backbone evals, "
                     f"{a['seconds_per_1000']:.3f} s / 1000 ({ratio:.1f}x faster than {label(ref)})")  # fmt: skip
    f, g = key["dtm_fastest_at_ref"], key["fm_fastest_at_ref"]
    within = f"within {100 * TOL:.0f} % of {label(ref)}'s mean {metric}"
    if f is None:
        lines.append(f"- No DTM configuration comes {within}: the >= 7x goal fails here.")
    else:
        verdict = "meets" if key["speedup"] >= 7 else "misses"
        lines.append(f"- Fastest DTM {within}: {label(f)}, {key['speedup']:.1f}x less wall time: {verdict} the "
                     f">= 7x goal as stated.")  # fmt: skip
    if g is not None:
        lines.append(f"- But FM itself comes {within} at {label(g)}, "
                     f"{ref['seconds_per_1000'] / g['seconds_per_1000']:.1f}x faster than {label(ref)}"
                     + (f"; the fastest such DTM takes {f['seconds_per_1000'] / g['seconds_per_1000']:.1f}x FM's "
                        "time." if f else "."))  # fmt: skip
    a, b = key.get("fm_128"), key["dtm_16x4"]
    if a is not None and b is not None:  # the paper's speed claim: DTM 16x4 vs FM 128, ~7x at equal quality
        lines.append(f"- Paper's speed pair: DTM 16x4 {metric} {fmt(b, metric)} vs FM 128 {fmt(a, metric)}; DTM 16x4 is "
                     f"{a['seconds_per_1000'] / b['seconds_per_1000']:.1f}x faster (paper: ~7x on an H100).")  # fmt: skip
    return lines


def plot(agg: list[dict], data: str, metrics: tuple[str, ...], path: Path) -> None:
    """Quality against backbone evaluations and against wall time, one row per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(metrics), 2, figsize=(12, 4.2 * len(metrics)), squeeze=False)
    series: dict[str, list[dict]] = defaultdict(list)
    for a in agg:
        key = a["model"] if a["method"] == "fm" else f"dtm S={a['head_steps']}" if a["method"] == "dtm" else (
            f"{a['method']} S={a['head_steps']}")  # fmt: skip
        series[key].append(a)
    for row, k in enumerate(metrics):
        for col, x in enumerate(("backbone_evals", "seconds_per_1000")):
            ax = axes[row][col]
            for name, pts in sorted(series.items()):
                pts = sorted(pts, key=lambda a: (a[x], a["steps"]))
                style = "o-" if name.startswith(("fm", "dtm")) else "s--"
                ax.errorbar([p[x] for p in pts], [p[k] for p in pts], yerr=[p[k + "_std"] for p in pts],
                            fmt=style, capsize=2, label=name, ms=4)  # fmt: skip
            ax.set_xscale("log")
            if k != "class_acc":
                ax.set_yscale("log")
            ax.set_xlabel(
                "backbone evaluations (NFE)" if x == "backbone_evals" else "seconds per 1,000 samples"
            )
            ax.set_ylabel(k)
            ax.set_title(f"{data}: {k} vs {'NFE' if col == 0 else 'wall time'}")
            ax.grid(alpha=0.3, which="both")
        axes[row][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def training_table(rows: list[dict]) -> str:
    """Median training seconds and steps per model over seeds."""
    per: dict[str, dict] = {}
    for r in rows:
        per.setdefault(r["model"], {})[r["seed"]] = (r["train_steps"], r["train_seconds"])
    lines = ["| model | steps | training s (median over seeds) |", "|---|---|---|"]
    for m, d in sorted(per.items()):
        lines.append(
            f"| {m} | {median([v[0] for v in d.values()]):.0f} | {median([v[1] for v in d.values()]):.0f} |"
        )
    return "\n".join(lines)


READING_START, READING_END = "<!-- reading -->", "<!-- /reading -->"


def write_markdown(path: Path, header: str, sections: list[str]) -> None:
    """Write the results page; a hand-written reading between the reading markers is kept."""
    reading = f"{READING_START}\n## Reading\n\n(to be written after looking at the numbers)\n{READING_END}"
    if path.is_file():
        old = path.read_text(encoding="utf-8")
        if READING_START in old and READING_END in old:
            reading = old[old.index(READING_START) : old.index(READING_END) + len(READING_END)]
    path.write_text(header + "\n\n" + reading + "\n\n" + "\n\n".join(sections) + "\n", encoding="utf-8")


def history_lines(history: list[dict]) -> list[str]:
    """One line per invocation that produced rows of this page."""
    out = []
    for i, h in enumerate(history, 1):
        bits = [
            h.get("date", "?"),
            f"{h.get('seconds', 0) / 60:.1f} min",
            f"{h.get('cells', '?')} cells evaluated",
        ]
        if "jobs" in h:
            bits.append(f"{h['jobs']} worker process{'es' if h['jobs'] > 1 else ''} of 1 torch thread")
        if "load_start" in h:
            bits.append(f"{h['cpus']} CPU cores, 1-min load average {h['load_start']:.1f} at the start and "
                        f"{h['load_end']:.1f} at the end")  # fmt: skip
        if h.get("note") and "--note" not in h.get("command", ""):
            bits.append(h["note"])
        out.append(f"{i}. `{h.get('command', '?')}` ({'; '.join(bits)})")
    return out


def page_sections(
    rows: list[dict], mode: dict, suffix: str, out: Path, extras: dict | None = None
) -> list[str]:
    """The per-data-set sections (headline bullets, table, training table, plot); writes the plots."""
    from transition_matching.study import convergence

    extras = extras or {}
    sections = []
    for d in [d for d in specs_of(mode) if any(r["data"] == d for r in rows)]:
        spec = specs_of(mode)[d]
        metrics = spec["metrics"]
        drows = [r for r in rows if r["data"] == d]
        agg = aggregate(drows, metrics)
        png = f"{STUDY}{suffix}_{d}.png"
        plot(agg, d, metrics, out / png)
        settings = {
            **spec["train"],
            "steps": mode["steps"][d],
            "guidance": spec["cfg"],
            "n_eval": n_eval_of(mode, d),
        }
        floor = extras.get("floors", {}).get(d)
        cal = extras.get("calibration", {}).get(d)
        seeds_d = sorted({r["seed"] for r in drows})
        lines = []
        if any(a["method"] == "dtm" for a in agg) and any(a["method"] == "fm" for a in agg):
            b, h = cost_fit(agg)
            lines = key_lines(key_numbers(agg, metrics[0]), metrics[0], (b, h))
            lines.append(
                f"- Cost model (least squares over the FM and DTM rows): one backbone pass {1000 * b:.1f} ms and one "
                f"head pass {1000 * h:.1f} ms per 1,000 samples, head/backbone = {h / b:.2f}; so DTM 16x4 vs FM 128 "
                f"can be at most 128 / (16 + 64 x {h / b:.2f}) = {128 / (16 + 64 * h / b):.1f}x faster here. (The "
                f"paper's ~7x implies head/backbone ~0.04.)"
            )
        if floor:
            lines.append("- Data-vs-data floor (what a perfect sampler scores with this many samples): "
                         + ", ".join(f"{k} {floor[k]:.3f}" for k in metrics if k in floor)
                         + f" ({floor['n']} vs {floor['n']}; first row of the table).")  # fmt: skip
        if cal:
            lines.insert(0, f"- Cost regime (measured before training): {convergence.regime_line(cal)}")
        curves = convergence.section(
            extras.get("curves", {}).get(d, {}), d, out / f"{STUDY}{suffix}_{d}_curves.png"
        )
        grid = f"{STUDY}{suffix}_{d}_samples.png"
        train_title = ("Training (same steps for all; `fm-eqtime` = FM for as many steps as fit in DTM's training "
                       "seconds):") if not cal else ("Training at equal compute (steps x calibrated seconds per step "
                                                    "= the FM budget's; `training s` measured while training):")  # fmt: skip
        sec = [f"## {d}", f"Seeds {seeds_d}. Settings: `{json.dumps(settings)}`.", "\n".join(lines), curves,
               markdown_table(agg, metrics, floor), train_title,
               training_table(drows) if not cal else convergence.compute_table(drows, cal), f"![{d}]({png})",
               f"Class-conditional samples (guidance {spec['cfg']}, seed {mode['grid']['seed']}), a row per class:\n\n"
               f"![{d} samples]({grid})" if (out / grid).is_file() else ""]  # fmt: skip
        sections.append("\n\n".join(x for x in sec if x))
    return sections


def write_outputs(
    out: Path, mode_name: str, rows: list[dict], history: list[dict], extras: dict | None = None
) -> None:
    """The JSON of raw rows (and the curves, floors and calibrations in extras), the markdown page and the plots
    of every cell present."""
    mode = MODES[mode_name]
    suffix = suffix_of(mode_name)
    summary = {"mode": mode_name, "settings": data_settings(mode, rows), "runs": history, "rows": rows}
    summary.update({k: v for k, v in (extras or {}).items() if v})
    json_path(out, suffix).write_text(json.dumps(summary, indent=1), encoding="utf-8")
    grid = plan_cells(default_datasets(mode), mode["seeds"], mode, methods=mode.get("methods", METHODS))
    done = set(cells_of(rows))
    n_grid = sum(len(v) for v in grid.values())
    n_done = sum((d, s, sp["name"]) in done for (d, s), v in grid.items() for sp in v)
    partial = (
        ""
        if n_done == n_grid
        else f" PARTIAL: {n_done} of the {n_grid} cells of the default grid are present."
    )
    n_eval = mode["n_eval"]
    draw = "the data set's n_eval" if isinstance(n_eval, dict) else f"the {n_eval}"
    timing = (f"the fastest of {1 + mode['time_repeats']} interleaved timed draws of 1,000 samples"
              if mode["time_repeats"] else f"the timed draw of {draw} metric samples, per 1,000")  # fmt: skip
    title = "# Transition Matching: quality vs backbone evaluations and wall time"
    title += "" if mode_name == "full" else f" ({mode_name})"
    if mode.get("equal_compute"):
        title += ("\n\nThe paper's regime: a backbone pass costs >= 20x a head step per token (configs/tm/*-paper"
                  ".toml), every model trained for the same compute (steps x measured seconds per step), FM and DTM "
                  "evaluated while they train (quality vs steps) before the comparison.")  # fmt: skip
    header = "\n\n".join([
        title,
        "Made by these invocations (a cell = one data set, seed and model; each invocation skipped the cells already "
        "present and added its own):\n\n" + "\n".join(history_lines(history)),
        f"Seeds {sorted({r['seed'] for r in rows})}; metrics are mean ± std over seeds (the `seeds` column counts "
        f"them), seconds the median over seeds of {timing}. All models of one data set and seed that one invocation "
        "evaluated were timed interleaved in one process; cells from different invocations were timed under "
        "different machine load, so compare wall times within one invocation or use the cost-model column. Raw "
        f"per-seed rows (with `timed_at`): `{STUDY}{suffix}.json`.{partial}",
    ])  # fmt: skip
    write_markdown(out / f"{STUDY}{suffix}.md", header, page_sections(rows, mode, suffix, out, extras))
    print(f"wrote {out / f'{STUDY}{suffix}.md'}", flush=True)

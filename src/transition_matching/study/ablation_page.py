"""The DTM ablation's results (study.ablation): one row per variant with mean ± std over seeds, the verdict
computed from those rows, quality against training steps, and the page, JSON and plot.

Everything here reads the ablation's mode dict (its "variants", "head", data and samplers) and the rows the
study's workers measured, so it can render synthetic rows as well as real ones."""

from __future__ import annotations

import json
import math
from pathlib import Path

from transition_matching.study.aggregate import mean_std, median, within_spread
from transition_matching.study.convergence import compute_table, mean_curve, regime_line
from transition_matching.study.page import history_lines, write_markdown
from transition_matching.study.plan import cell_settings, cells_of
from transition_matching.study.quality import FLAT, flatness, render_grids

METRIC = "cfid"  # lower is better
GOAL_SPEEDUP = 5.0  # the goal: FM 128's cFID within the seed spread at >= 5x less sampling wall time
GOAL_FM, MOONSHOT_FM = 128, 256


def data_of(mode: dict) -> str:
    return mode["datasets"][0]


def matches(row: dict, v: dict) -> bool:
    """A measured row belongs to a variant: its model, steps, head steps and head solver (Euler by default)."""
    return (row["model"], row["steps"], row["head_steps"], row.get("head_solver", "euler")) == (
        v["model"], v["steps"], v["head_steps"], v["head_solver"])  # fmt: skip


def variant_table(rows: list[dict], variants: list[dict]) -> list[dict]:
    """One entry per variant with rows: the variant, seeds, the per-seed cFID, mean and std over seeds of the
    metrics and of the seconds per 1,000 samples, the median training steps and seconds."""
    out = []
    for v in variants:
        rs = sorted((r for r in rows if matches(r, v)), key=lambda r: r["seed"])
        if not rs:
            continue
        a = {**v, "seeds": len(rs), "per_seed": {r["seed"]: r[METRIC] for r in rs},
             "train_steps": median([r["train_steps"] for r in rs]),
             "train_seconds": median([r["train_seconds"] for r in rs])}  # fmt: skip
        for k in ("cfid", "indep_acc", "class_acc", "seconds_per_1000"):
            if all(k in r for r in rs):
                a[k], a[k + "_std"] = mean_std([r[k] for r in rs])
        out.append(a)
    return out


def best_of(entries: list[dict]) -> dict | None:
    """The entry of lowest mean cFID (None for none)."""
    return min(entries, key=lambda a: a[METRIC]) if entries else None


def fmt(a: dict, k: str = METRIC) -> str:
    return f"{a[k]:.3f} ± {a[k + '_std']:.3f}"


def speedup(a: dict, ref: dict) -> float:
    """How many times less sampling wall time `a` takes than `ref` (mean seconds per 1,000 samples)."""
    return ref["seconds_per_1000"] / a["seconds_per_1000"]


def spread(a: dict, b: dict) -> float:
    return math.hypot(a[METRIC + "_std"], b[METRIC + "_std"])


def verdict(table: list[dict], goal_speedup: float = GOAL_SPEEDUP) -> dict:
    """The goal and the moonshot, decided from the variant table.

    Goal: some DTM recipe is within the seed spread of the better FM 128 (study.aggregate.within_spread: worse by
    at most sqrt(std_DTM^2 + std_FM^2), >= 2 seeds each) at >= goal_speedup x less sampling wall time; the best
    such recipe is named, else the DTM of lowest mean cFID. Moonshot: the DTM of lowest mean cFID has a lower
    mean cFID than the better FM 256 (>= 2 seeds each) at >= goal_speedup x less wall time. Returns goal and
    moonshot (True, False, or None when the rows to decide are missing), the variants compared, and a line."""
    fm = {
        k: best_of([a for a in table if a["method"] == "fm" and a["steps"] == k])
        for k in (GOAL_FM, MOONSHOT_FM)
    }
    dtm = [a for a in table if a["method"] == "dtm"]
    ref = fm[GOAL_FM]
    if ref is None or not dtm:
        return {"goal": None, "moonshot": None, "line": f"**Verdict: none yet**: the table has no FM {GOAL_FM} or "
                "no DTM rows."}  # fmt: skip
    ok = [a for a in dtm if within_spread(a, ref, METRIC) and speedup(a, ref) >= goal_speedup]
    pick = best_of(ok) or best_of(dtm)
    goal = bool(ok)
    gap, sp, fast = pick[METRIC] - ref[METRIC], spread(pick, ref), speedup(pick, ref)
    what = f"{pick['label']} (cFID {fmt(pick)}) against {ref['label']} ({fmt(ref)})"
    if goal:
        why = f"{what}: {gap:+.3f}, within the seed spread {sp:.3f}, at {fast:.1f}x less sampling wall time"
    elif min(pick["seeds"], ref["seeds"]) < 2:
        why = f"{what}: fewer than 2 seeds, so the seed spread is unknown ({fast:.1f}x less wall time)"
    elif within_spread(pick, ref, METRIC):
        why = f"{what}: within the seed spread, but only {fast:.1f}x less wall time (the goal: >= {goal_speedup:g}x)"
    else:
        why = f"{what}: worse by {gap:.3f}, more than the seed spread {sp:.3f} ({fast:.1f}x less wall time)"
    line = (f"**Verdict: goal {'met' if goal else 'not met'}.** Goal: a DTM {pick['steps']}x{pick['head_steps']} "
            f"recipe reaches FM {GOAL_FM}'s cFID (its better time sampling) within the seed spread at >= "
            f"{goal_speedup:g}x less sampling wall time. {why}.")  # fmt: skip
    moon, top, r256 = None, best_of(dtm), fm[MOONSHOT_FM]
    if r256 is None:
        line += f" Moonshot (beat FM {MOONSHOT_FM}): no FM {MOONSHOT_FM} rows yet."
    else:
        enough = min(top["seeds"], r256["seeds"]) >= 2
        moon = enough and top[METRIC] < r256[METRIC] and speedup(top, r256) >= goal_speedup
        clear = r256[METRIC] - top[METRIC] > spread(top, r256)
        note = "" if enough else " (fewer than 2 seeds)"
        if moon:
            note = " by more than the seed spread" if clear else " (within the seed spread)"
        line += (f" **Moonshot {'met' if moon else 'not met'}**{note}: a lower mean cFID than {r256['label']} "
                 f"({fmt(r256)}); the best DTM is {top['label']} ({fmt(top)}, {speedup(top, r256):.1f}x less "
                 f"wall time).")  # fmt: skip
    return {"goal": goal, "moonshot": moon, "pick": pick["key"], "best_dtm": top["key"], "fm_goal": ref["key"],
            "fm_moonshot": r256["key"] if r256 else None, "line": line}  # fmt: skip


def causal_verdict(table: list[dict]) -> dict:
    """The paper's other claim, "FHTM matches or beats FM", decided from the variant table (and the same for
    ARTM): the method's row of lowest mean cFID is no worse than the better FM 128 by more than the seed spread
    (study.aggregate.within_spread, >= 2 seeds each). Quality only: the causal models' sampling time is shown,
    not required. Returns fhtm and artm (True, False, or None when undecided), the rows compared, and a line."""
    ref = best_of([a for a in table if a["method"] == "fm" and a["steps"] == GOAL_FM])
    out: dict = {"fm_goal": ref["key"] if ref else None, "best_dtm": None}
    if ref is None:
        return {**out, "line": f"**Verdict: none yet**: the table has no FM {GOAL_FM} rows."}
    parts = []
    for m in ("fhtm", "artm"):
        top = best_of([a for a in table if a["method"] == m])
        if top is None:
            out[m] = None
            parts.append(f"{m.upper()}: no rows yet")
            continue
        what = f"{top['label']} (cFID {fmt(top)}) against {ref['label']} ({fmt(ref)})"
        if min(top["seeds"], ref["seeds"]) < 2:
            out[m] = None
            parts.append(f"{m.upper()} undecided (fewer than 2 seeds): {what}")
            continue
        out[m] = within_spread(top, ref, METRIC)
        gap, sp = top[METRIC] - ref[METRIC], spread(top, ref)
        how = "beats it" if gap < -sp else "matches it (within the seed spread)" if out[m] else "is worse"
        parts.append(f"{m.upper()} {how}: {what}, {gap:+.3f} against the spread {sp:.3f}, "
                     f"{speedup(top, ref):.1f}x less sampling wall time")  # fmt: skip
        out[f"pick_{m}"] = top["key"]
    state = {True: "holds", False: "does not hold", None: "undecided"}[out["fhtm"]]
    out["line"] = (f"**Verdict: \"FHTM matches or beats FM\" {state}.** At equal training compute, the best "
                   f"row of each causal model against FM {GOAL_FM} with its better time sampling. "
                   + "; ".join(parts) + ".")  # fmt: skip
    return out


def markdown_table(table: list[dict], floor: dict | None = None) -> str:
    """The variants: lever, steps at equal compute, training seconds, cFID (mean ± std, per seed, change from the
    baseline), indep_acc, sampling seconds and the speed-up over the better FM 128."""
    base = next((a for a in table if a["key"] == "baseline"), None)
    ref = best_of([a for a in table if a["method"] == "fm" and a["steps"] == GOAL_FM])
    lines = ["| variant | lever added | model trained | steps (equal compute) | training s | seeds | cFID | cFID per seed "
             "| Δ cFID vs baseline | indep_acc | s / 1000 samples | less wall time than FM 128 |",
             "|" + "---|" * 12]  # fmt: skip
    if floor:
        lines.append(f"| data vs data ({floor['n']} vs {floor['n']}, the floor) | - | - | - | - | - | "
                     f"{floor.get('cfid', float('nan')):.3f} | - | - | {floor.get('indep_acc', float('nan')):.3f} "
                     "| - | - |")  # fmt: skip
    for a in table:
        per = ", ".join(f"{v:.2f}" for _, v in sorted(a["per_seed"].items()))
        delta = "-"
        if base is not None and a is not base:
            d = a[METRIC] - base[METRIC]
            delta = f"{d:+.3f} ({100 * d / base[METRIC]:+.1f} %)"
        acc = fmt(a, "indep_acc") if "indep_acc" in a else "-"
        fast = f"{speedup(a, ref):.1f}x" if ref is not None else "-"
        lines.append(f"| {a['label']} | {a['lever']} | {a['model']} | {a['train_steps']:.0f} | {a['train_seconds']:.0f} "
                     f"| {a['seeds']} | {fmt(a)} | {per} | {delta} | {acc} | {fmt(a, 'seconds_per_1000')} | {fast} |")  # fmt: skip
    return "\n".join(lines)


def curves_section(curves: dict, table: list[dict], decided: dict, png: Path, title: str) -> str:
    """cFID against training steps of every trained model (mean ± std over seeds; FM sampled with 128 Euler
    steps, DTM with 16x4 and an Euler head), its flatness over the last quarter, and whether the better FM 128
    and the best DTM recipe's model have converged; writes the plot. Empty without curves."""
    if not curves:
        return ""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(key.split("/", 1)[1] for key in curves))
    first = next(iter(curves.values()))["spec"]
    roles = {
        decided.get("fm_goal"): f"the better FM {GOAL_FM}",
        decided.get("best_dtm"): "the best DTM recipe",
    }
    labels = {
        a["model"]: f"{roles[a['key']]} ({a['label']}, model {a['model']})"
        for a in table
        if a["key"] in roles
    }
    fig, ax = plt.subplots(figsize=(8, 4.5))
    lines, state = [], {}
    for name in names:
        steps, mean, std, k = mean_curve(curves, name, METRIC)
        if not steps:
            continue
        spec = next(c["spec"] for key, c in curves.items() if key.endswith("/" + name))
        sampler = (
            f"{spec['steps']}x{spec['head_steps']}" if name.startswith("dtm") else f"{spec['steps']} steps"
        )
        bold = name in labels
        ax.errorbar(steps, mean, yerr=std, fmt="o-" if name.startswith("dtm") else "s--", capsize=2, ms=4,
                    lw=2.5 if bold else 1.2, label=f"{name} ({sampler}, {k} seed{'s' * (k > 1)})")  # fmt: skip
        change = flatness(list(zip(steps, mean, strict=True)))
        if change is not None:
            state[name] = f"{'flat' if abs(change) < FLAT else 'still changing'} ({100 * change:+.1f} %)"
            lines.append(f"- {name} ({sampler}): cFID {mean[-1]:.3f} ± {std[-1]:.3f} after {steps[-1]} steps; the last "
                         f"quarter of training changed it by {100 * change:+.1f} %: {state[name].split(' (')[0]}.")  # fmt: skip
    ax.set_xlabel("training steps")
    ax.set_ylabel("cFID (lower is better)")
    ax.set_yscale("log")
    ax.set_title(f"{title}: cFID while training (equal compute per model)", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)
    answer = [f"{labels[m]}: {state[m]}" for m in labels if m in state]
    head = (f"Quality against training steps: the EMA weights evaluated while training, {first['n']} samples each "
            f"(fewer than the table's), the same sampler throughout; a change of less than {100 * FLAT:.0f} % over "
            "the last quarter counts as flat.")  # fmt: skip
    if answer:
        head += " **Converged?** " + "; ".join(answer) + "."
    return "\n\n".join([head, "\n".join(lines), f"![cFID vs training steps]({png.name})"])


def setup_lines(mode: dict, extras: dict) -> list[str]:
    """What was trained and how: the networks, the budget, the head lever's width, the cost regime, the floor."""
    d = data_of(mode)
    spec, head = mode["data_specs"][d], mode["head"]
    out = [f"- Data {d}, networks `{json.dumps(spec['train'])}`, guidance {spec['cfg']}; {mode['n_eval'][d]} "
           f"class-conditional samples per row (cFID, indep_acc: the independent CNN's accuracy). Seeds "
           f"{list(mode['seeds'])} by default.",
           f"- Equal compute: every model trains budget x (FM's seconds per step) / (its own) steps, budget = "
           f"{mode['steps'][d]} FM steps; a lever that makes a step dearer gets fewer steps.",
           f"- Head lever: the preset's head ({head['preset_depth']} residual blocks of width "
           f"{head['preset_width']}) has {100 * head['preset_share']:.2f} % of the backbone's "
           f"{head['backbone_params'] / 1e6:.2f}M parameters, already near the paper's ratio; the lever takes the "
           f"paper's head shape ({head['depth']} blocks, as MAR's head) at the width closest to "
           f"{100 * head['target']:.0f} %: width {head['width']} ({100 * head['share']:.2f} %), counted by "
           "transition_matching.cost (`tm cost`).",
           "- The sde head sampler is Euler-Maruyama with the flow's marginals at the same number of head "
           "evaluations (solvers.py); it needs no training, so it is evaluated on the baseline and the all-levers "
           "models."]  # fmt: skip
    if mode.get("part") == "causal":
        out.append("- ARTM and FHTM use the paper's T = 3 schedule (0, 0.5, 0.75, 1): 3 transitions of the 4 "
                   "tokens, each token's head conditioned on the backbone's causal pass (a KV cache in sampling). "
                   "Their runs have no curves; FM's runs are the levers' own (the same settings and steps).")  # fmt: skip
    if mode.get("grid"):
        out.append(
            "- Sample grids: seed 0, 8 samples of every class per configuration, beside the training images."
        )
    cal = extras.get("calibration", {}).get(d)
    if cal:
        out.append(f"- Cost regime (measured before training): {regime_line(cal)}")
    return out


def write_page(
    path: Path,
    mode_name: str,
    mode: dict,
    rows: list[dict],
    history: list[dict],
    extras: dict | None = None,
    root: Path | None = None,
) -> dict:
    """The JSON (rows, curves, floors, calibration, the verdict), the markdown page beside it (a hand-written
    reading between the reading markers is kept) and the curves' plot; returns the verdict."""
    extras = extras or {}
    d = data_of(mode)
    table = variant_table(rows, mode["variants"])
    decide = causal_verdict if mode.get("verdict") == "causal" else verdict
    decided = decide(table)
    rec = {"mode": mode_name, "settings": cell_settings(mode, d), "variants": mode["variants"], "head": mode["head"],
           "verdict": decided, "runs": history, "rows": rows}  # fmt: skip
    rec.update({k: v for k, v in extras.items() if v})
    path.write_text(json.dumps(rec, indent=1), encoding="utf-8")
    n_cells = len(mode["seeds"]) * len(mode["models"])
    done = sum(1 for (_, s, _) in cells_of(rows) if s in mode["seeds"])
    partial = "" if done >= n_cells else f" PARTIAL: {done} of the {n_cells} cells (seed, model) are present."
    command = history[-1].get("command", "?") if history else "(none yet)"
    header = "\n\n".join([
        f"# {mode['title']} ({mode_name})",
        f"Command: `{command}`",
        decided["line"] + f" (Computed from the table below by `transition_matching.study.ablation_page."
        f"{decide.__name__}`.)",
        f"Metrics are mean ± std over seeds, sampling seconds per 1,000 samples timed interleaved in one process "
        f"per seed. Raw rows: `{path.name}`.{partial}",
    ])  # fmt: skip
    png = path.with_name(f"{path.stem}_curves.png")
    cal = extras.get("calibration", {}).get(d)
    samples = path.with_name(f"{path.stem}_samples.png")
    grids = root is not None and render_grids(Path(root), samples, d, mode)
    sections = [
        "## Setup\n\n" + "\n".join(setup_lines(mode, extras)),
        "## Variants\n\n" + markdown_table(table, extras.get("floors", {}).get(d)),
        "## Training at equal compute\n\n" + compute_table(rows, cal) if cal and rows else "",
        "## Quality vs training steps\n\n"
        + curves_section(extras.get("curves", {}).get(d, {}), table, decided, png, mode["title"]),
        f"## Samples (seed {mode['grid']['seed']})\n\n![samples]({samples.name})" if grids else "",
        "## Invocations\n\n" + "\n".join(history_lines(history)) if history else "",
    ]  # fmt: skip
    write_markdown(path.with_suffix(".md"), header, [s for s in sections if s and not s.endswith("\n\n")])
    print(f"wrote {path.with_suffix('.md')}", flush=True)
    return decided

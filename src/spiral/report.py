"""The run report: one self-contained HTML page (PNGs inlined) for a SPIRAL training run folder.

Reads config.json, metrics.jsonl (rollout/..., train/..., eval/...), plots/*.png, transcripts/*.jsonl and
the outputs of `spiral eval games` / `spiral eval reasoning` stored under the run (eval/**/summary.json,
eval/**/transcripts.jsonl). When the run has no plots, the curves are drawn here from metrics.jsonl.
"""

from __future__ import annotations

import html
import io
import json
import math
from pathlib import Path
from typing import Any

from runkit.errors import UserError
from runkit.metrics import read_metrics
from runkit.report import image_html, table_html, write_report
from spiral.phases import fmt_ci, summary_errors

MAX_PANELS = 12  # subplots per figure
TRANSCRIPT_CHARS = 1500  # per turn shown; longer observations and responses are cut in the middle
CURVE_GROUPS = ("rollout", "train", "eval")


# ---- curves --------------------------------------------------------------------------------------


def numeric_series(rows: list[dict[str, Any]]) -> dict[str, tuple[list[float], list[float]]]:
    """key -> (steps, values) for every finite numeric metric."""
    series: dict[str, tuple[list[float], list[float]]] = {}
    for row in rows:
        step = row.get("step")
        if not isinstance(step, (int, float)):
            continue
        for k, v in row.items():
            if (
                k in ("step", "time")
                or isinstance(v, bool)
                or not isinstance(v, (int, float))
                or not math.isfinite(v)
            ):
                continue
            xs, ys = series.setdefault(k, ([], []))
            xs.append(step)
            ys.append(float(v))
    return series


def curve_pngs(series: dict[str, tuple[list[float], list[float]]]) -> list[tuple[str, bytes]]:
    """One PNG per metric group (rollout/, train/, eval/<game>/, other), up to MAX_PANELS panels each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, list[str]] = {}
    for key in sorted(series):
        parts = key.split("/")
        group = (
            "/".join(parts[:2])
            if parts[0] == "eval" and len(parts) > 2
            else parts[0]
            if len(parts) > 1
            else "other"
        )
        groups.setdefault(group, []).append(key)
    out = []
    for group, keys in groups.items():
        for start in range(0, len(keys), MAX_PANELS):
            chunk = keys[start : start + MAX_PANELS]
            cols = min(3, len(chunk))
            rows = math.ceil(len(chunk) / cols)
            fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
            for ax, key in zip(axes.flat, chunk, strict=False):
                xs, ys = series[key]
                ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, linewidth=1.2)
                ax.set_title(key.removeprefix(group + "/"), fontsize=9)
                ax.set_xlabel("step", fontsize=8)
                ax.tick_params(labelsize=7)
                ax.grid(alpha=0.3)
            for ax in list(axes.flat)[len(chunk) :]:
                ax.axis("off")
            fig.suptitle(group, fontsize=11)
            fig.tight_layout()
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=90)
            plt.close(fig)
            out.append(
                (f"{group} ({start // MAX_PANELS + 1})" if len(keys) > MAX_PANELS else group, buf.getvalue())
            )
    return out


# ---- tables --------------------------------------------------------------------------------------


def eval_tables(rows: list[dict[str, Any]]) -> str:
    """Per eval/<game>/<opponent> prefix: a table of steps x metrics."""
    by_prefix: dict[str, dict[int, dict[str, Any]]] = {}
    for row in rows:
        for k, v in row.items():
            if not k.startswith("eval/") or "/" not in k[5:]:
                continue
            prefix, _, name = k.rpartition("/")
            by_prefix.setdefault(prefix, {}).setdefault(row.get("step", -1), {"step": row.get("step")})[
                name
            ] = v
    if not by_prefix:
        return "<p><em>metrics.jsonl has no eval/ metrics</em></p>"
    parts = []
    for prefix in sorted(by_prefix):
        table = [by_prefix[prefix][s] for s in sorted(by_prefix[prefix])]
        columns = ["step", *sorted({c for r in table for c in r if c != "step"})]
        parts.append(f"<h3>{html.escape(prefix)}</h3>{table_html(table, columns)}")
    return "".join(parts)


def games_table(summary: dict[str, Any]) -> str:
    """A `spiral eval games` summary as a table."""
    rows = []
    for key, s in summary.get("results", {}).items():
        for seat in ("all", "seat0", "seat1"):
            b = s.get(seat, {})
            if not b.get("games"):
                continue
            rows.append({
                "game vs opponent": key, "seat": seat.replace("seat", ""), "games": b["games"],
                "win": b["win_rate"], "win 95% CI": fmt_ci(b.get("win_ci")), "draw": b["draw_rate"],
                "loss": b["loss_rate"], "invalid": b["invalid_rate"], "turns": b["mean_turns"],
                "response chars": b["mean_response_chars"],
            })  # fmt: skip
    return table_html(rows)


def reasoning_table(summary: dict[str, Any]) -> str:
    """A `spiral eval reasoning` summary as a table."""
    rows = []
    for name, s in [*summary.get("tasks", {}).items(), ("overall", summary.get("overall", {}))]:
        if not s.get("items"):
            continue
        rows.append({
            "task": name, "items": s["items"], "samples": s["samples"], "accuracy": s["accuracy"],
            "95% CI (items)": fmt_ci(s.get("ci")), "boxed": s["boxed_rate"],
            "response tokens": s.get("mean_response_tokens") or "", "s/item": s.get("seconds_per_item", ""),
        })  # fmt: skip
    cfg = summary.get("config", {})
    model, samples = html.escape(str(cfg.get("model"))), html.escape(str(summary.get("samples_per_item")))
    temperature, top_p = html.escape(str(cfg.get("temperature"))), html.escape(str(cfg.get("top_p")))
    head = f"<p>model <code>{model}</code>, {samples} samples per item, temperature {temperature}, top-p {top_p}</p>"
    return head + table_html(rows)


# ---- transcripts ---------------------------------------------------------------------------------


def _cut(text: str, limit: int = TRANSCRIPT_CHARS) -> str:
    text = str(text)
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - limit} characters cut ...]\n{text[-half:]}"


def _outcome(record: dict[str, Any]) -> str:
    """win / loss / draw of the evaluated model, or '' when the record does not say."""
    out = record.get("outcome")
    if isinstance(out, str):
        return out
    if isinstance(out, dict) and "seat" in record:
        return str(out.get(str(record["seat"]), out.get(record["seat"], "")))
    return ""


def transcript_html(record: dict[str, Any]) -> str:
    """One game as alternating observation / response blocks."""
    turns = record.get("transcript") or record.get("turns") or []
    title = " ".join(
        str(x) for x in (record.get("env_id", ""), "vs " + str(record["opponent"]) if "opponent" in record else "",
                         f"seat {record['seat']}" if "seat" in record else "", _outcome(record).upper()) if x
    )  # fmt: skip
    parts = [f"<h3>{html.escape(title or 'game')}</h3>"]
    where = ", ".join(f"{k} {record[k]}" for k in ("source", "step") if k in record)
    if where:
        parts.append(f"<p><small>{html.escape(where)}</small></p>")
    if record.get("reason"):
        parts.append(f"<p>{html.escape(str(record['reason']))}</p>")
    for i, t in enumerate(turns):
        if not isinstance(t, dict):
            parts.append(f"<pre>{html.escape(_cut(json.dumps(t)))}</pre>")
            continue
        who = t.get("agent", "") or ("player " + str(t.get("player", t.get("role", "?"))))
        obs = t.get("observation", t.get("prompt", ""))
        resp = t.get("response", t.get("response_text", t.get("action", "")))
        flag = f" — invalid: {t['invalid']}" if t.get("invalid") else ""
        parts.append(
            f"<details{' open' if i < 2 else ''}><summary>turn {i + 1}: {html.escape(str(who))}"
            f"{html.escape(flag)}</summary><pre>{html.escape(_cut(obs))}</pre></details>"
            f"<pre><b>{html.escape(str(who))}:</b> {html.escape(_cut(resp))}</pre>"
        )
    return "".join(parts)


def pick_games(records: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """Up to k wins and k losses (then draws if fewer), in file order."""
    wins = [r for r in records if _outcome(r) == "win"][:k]
    losses = [r for r in records if _outcome(r) == "loss"][:k]
    rest = [r for r in records if r not in wins and r not in losses][
        : max(0, 2 * k - len(wins) - len(losses))
    ]
    return wins + losses + rest


def transcript_records(run: Path) -> list[dict[str, Any]]:
    """Saved games, most informative first: `spiral eval games` outputs, then the training evaluations from
    the newest step back, then self-play samples from the newest back. Each record gets its `source` file."""
    files: list[Path] = []
    if (run / "eval").is_dir():
        files += sorted((run / "eval").rglob("transcripts.jsonl"))
    tdir = run / "transcripts"
    if tdir.is_dir():
        files += sorted(tdir.glob("eval*.jsonl"), reverse=True)
        files += sorted((p for p in tdir.glob("*.jsonl") if not p.name.startswith("eval")), reverse=True)
    records = []
    for path in files:
        rows = _read_jsonl(path)
        if path.parent == tdir and not path.name.startswith("eval"):
            rows.reverse()  # appended per step: newest last
        records += [{**r, "source": str(path.relative_to(run))} for r in rows]
    return records


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_bytes().splitlines():
        try:
            row = json.loads(line.decode("utf-8"))
        except ValueError:  # a torn line, or not UTF-8
            continue
        if isinstance(row, dict):
            out.append(row)
    return out


# ---- the page ------------------------------------------------------------------------------------


def _overview(run: Path, config: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    facts = {"run folder": str(run), "logged steps": len(rows)}
    if rows:
        facts["last step"] = rows[-1].get("step")
        t = [r["time"] for r in rows if isinstance(r.get("time"), (int, float))]
        if len(t) > 1:
            facts["wall time (min)"] = round((max(t) - min(t)) / 60, 1)
    for section, keys in (("model", ("name", "lora")), ("rollout", ("env_ids", "opponent", "max_new_tokens")),
                          ("advantage", ("estimator",)), ("run", ("steps", "seed")), ("learner", ("lr",))):  # fmt: skip
        sec = config.get(section)
        if isinstance(sec, dict):
            for k in keys:
                if k in sec:
                    facts[f"{section}.{k}"] = sec[k]
    table = table_html([{"setting": k, "value": v} for k, v in facts.items()], ["setting", "value"])
    cfg = html.escape(json.dumps(config, indent=2, default=str))
    return f"{table}<details><summary>full config.json</summary><pre>{cfg}</pre></details>"


def exploitability_section(run: Path) -> str:
    """The exact-readout table of eval/exploitability.jsonl: first, best and last readout beside Nash."""
    from spiral.agents.kuhn import KEYS, nash_policy

    path = run / "eval" / "exploitability.jsonl"
    if not path.is_file():
        return ""
    rows = [r for r in _read_jsonl(path) if isinstance(r.get("probs"), dict)]
    if not rows:
        return ""

    def value(r: dict) -> float:  # a number, or inf for anything else a foreign file may hold
        v = r.get("exploitability")
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.inf

    best = min(rows, key=value)
    shown = {"first": rows[0], "best": best, "last": rows[-1]}
    nash = nash_policy(0.0)

    def cell(v: Any) -> str:
        return html.escape(f"{v:.2f}" if isinstance(v, (int, float)) else str(v))

    head = "".join(f"<th>{html.escape(k)}</th>" for k in KEYS)
    body = [
        f"<tr><td>Nash (alpha 0)</td><td></td><td>0</td>{''.join(f'<td>{nash[k]:.2f}</td>' for k in KEYS)}</tr>"
    ]
    for name, r in shown.items():
        probs = r["probs"]
        body.append(
            f"<tr><td>{html.escape(name)}</td><td>{cell(r.get('step'))}</td><td>{cell(r.get('exploitability'))}"
            f"</td>{''.join(f'<td>{cell(probs.get(k))}</td>' for k in KEYS)}</tr>"
        )
    last = rows[-1]
    return (
        f"<p>P(bet or call) at each information set, read from the logits; {len(rows)} readouts. Last: "
        f"exploitability {cell(last.get('exploitability'))}, average policy {cell(last.get('avg_exploitability'))}"
        + (
            f" [95 % interval over the sampled thoughts {cell(last['ci_low'])}, {cell(last['ci_high'])}]"
            if "ci_low" in last
            else ""
        )
        + " (uniform random 0.458).</p>"
        f"<table><tr><th>readout</th><th>step</th><th>exploitability</th>{head}</tr>{''.join(body)}</table>"
    )


def thoughts_section(run: Path, per_infoset: int = 2) -> str:
    """Think mode: the thought diagnostics and a few sampled thoughts per information set, verbatim, at the first
    and the last readout of eval/exploitability.jsonl."""
    path = run / "eval" / "exploitability.jsonl"
    rows = (
        [r for r in _read_jsonl(path) if isinstance(r.get("examples"), dict) and r["examples"]]
        if path.is_file()
        else []
    )
    if not rows:
        return ""
    parts = []
    for name, r in (("first", rows[0]), ("last", rows[-1])):
        diag = r.get("diagnostics") if isinstance(r.get("diagnostics"), dict) else {}
        stats = ", ".join(
            f"{html.escape(str(k))} {v:.3f}" for k, v in diag.items() if isinstance(v, (int, float))
        )
        items = "".join(
            f"<li><b>{html.escape(str(k))}</b>: " + " | ".join(html.escape(_cut(str(t), 300)) for t in ts[:per_infoset])
            + "</li>" for k, ts in r["examples"].items() if isinstance(ts, list)
        )  # fmt: skip
        parts.append(
            f"<h3>{name} readout (step {html.escape(str(r.get('step')))})</h3><p>{stats}</p><ul>{items}</ul>"
        )
    return "".join(parts)


def build_report(run_dir: str | Path, out: str | Path | None = None, transcripts: int = 2) -> Path:
    """Write the run's report.html (or `out`) and return its path."""
    run = Path(run_dir)
    if not run.is_dir():
        raise UserError(f"{run} is not a folder; pass a training run folder")
    if not (run / "config.json").is_file() and not (run / "metrics.jsonl").is_file():
        raise UserError(f"{run} is not a run folder (no config.json or metrics.jsonl)")
    config: dict[str, Any] = {}
    if (run / "config.json").is_file():
        try:
            config = json.loads((run / "config.json").read_text(encoding="utf-8"))
        except ValueError:  # not JSON, or not UTF-8
            raise UserError(f"{run / 'config.json'} is not valid UTF-8 JSON") from None
        if not isinstance(config, dict):
            raise UserError(
                f"{run / 'config.json'} holds a JSON {type(config).__name__}, not a run's settings"
            )
    rows = read_metrics(run / "metrics.jsonl")
    sections: list[tuple[str, str]] = [("Run", _overview(run, config, rows))]

    pngs = sorted((run / "plots").glob("*.png")) if (run / "plots").is_dir() else []
    if pngs:
        curves = "".join(f"<h3>{html.escape(p.stem)}</h3>{image_html(p, p.stem)}" for p in pngs)
    else:
        drawn = curve_pngs(numeric_series(rows))
        curves = "".join(f"<h3>{html.escape(n)}</h3>{image_html(b, n)}" for n, b in drawn)
    sections.append(("Training curves", curves or "<p><em>no metrics logged yet</em></p>"))
    sections.append(("Evaluation during training", eval_tables(rows)))
    readout = exploitability_section(run)
    if readout:
        sections.append(("Kuhn policy readout and exploitability", readout))
    thoughts = thoughts_section(run)
    if thoughts:
        sections.append(("Thoughts (think mode)", thoughts))

    eval_dir = run / "eval"
    summaries = sorted(eval_dir.rglob("summary.json")) if eval_dir.is_dir() else []
    games_html, reasoning_html = [], []
    for path in summaries:
        try:
            s = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:  # not JSON (a torn write), or not UTF-8
            continue
        label = f"<h3>{html.escape(str(path.parent.relative_to(run)))}</h3>"
        with summary_errors(path):
            if not isinstance(s, dict):
                raise TypeError(f"a JSON {type(s).__name__}, not an object")
            if s.get("kind") == "games":
                games_html.append(label + games_table(s))
            elif "suite" in s and "tasks" in s:
                reasoning_html.append(label + reasoning_table(s))
    if games_html:
        sections.append(("Game evaluation (spiral eval games)", "".join(games_html)))
    from spiral.evaluation.league.summary import league_sections
    from spiral.sft.report import sft_section

    for title, body in (("Supervised fine-tuning (spiral sft)", sft_section(run)),
                        ("League ratings (spiral eval league)", league_sections(run))):  # fmt: skip
        if body:
            sections.append((title, body))

    chosen = pick_games(transcript_records(run), transcripts)
    sections.append(
        (
            "Game transcripts",
            "".join(transcript_html(r) for r in chosen) or "<p><em>no transcripts saved</em></p>",
        )
    )
    sections.append(
        (
            "Reasoning transfer",
            "".join(reasoning_html) or "<p><em>no reasoning evaluation under eval/</em></p>",
        )
    )

    title = f"SPIRAL run {run.resolve().name}"
    return write_report(Path(out) if out else run / "report.html", title, sections)

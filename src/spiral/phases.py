"""The phases of a run (base, after warm-up, after self-play): where their evaluations live and their tables.

`phases_markdown` (`spiral report --markdown`) and `phase_summary` / `format_phases` (phases.json and the train
command's last lines) read eval/<phase>/summary.json and metrics.jsonl of a run folder.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from runkit.errors import UserError
from runkit.metrics import read_metrics


def fmt_ci(ci: Any) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if isinstance(ci, (list, tuple)) and len(ci) == 2 else ""


@contextmanager
def summary_errors(path: Path) -> Iterator[None]:
    """A summary.json of the wrong shape (a list, a missing rate, text for a number) as one UserError line."""
    try:
        yield
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as e:
        what = f"no {e}" if isinstance(e, KeyError) else " ".join(str(e).split())[:120]
        raise UserError(
            f"{path} is not a summary this report can read ({what}); re-run its evaluation"
        ) from None


PHASES = {
    "base": "0_base",
    "warmup": "1_after_warmup",
    "sft": "1_after_sft",  # spiral sft (supervised fine-tuning on expert moves)
    "final": "2_after_selfplay",
}  # eval/<folder> per phase
PHASE_LABELS = {"base": "base", "warmup": "after warm-up", "sft": "after SFT", "final": "after self-play"}


def _pct_ci(rate: float, ci: Any) -> str:
    return f"{rate:.3f} {fmt_ci(ci)}".rstrip()


def _optional(block: dict[str, Any], what: str) -> str:
    """`what`_rate with its interval, or '-' for summaries written before the rate was recorded."""
    rate = block.get(f"{what}_rate")
    return _pct_ci(float(rate), block.get(f"{what}_ci")) if rate is not None else "-"


def training_seconds(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Warm-up and self-play seconds as the run measured them (evaluation excluded)."""
    warm = sum(float(r["warmup/seconds"]) for r in rows if isinstance(r.get("warmup/seconds"), (int, float)))
    steps = [
        float(r["time/step_seconds"]) for r in rows if isinstance(r.get("time/step_seconds"), (int, float))
    ]
    return {"warmup_s": warm, "selfplay_s": sum(steps), "steps": float(len(steps))}


def _md(value: Any) -> str:
    """A value from a file as one Markdown table cell: pipes escaped, line breaks flattened."""
    text = " ".join(str(value).split()).replace("|", "\\|")
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")  # no raw HTML from run files


def phases_markdown(run_dir: str | Path) -> str:
    """Markdown: training time and, per phase (base, after warm-up, after self-play), each game, opponent and
    seat with the win, draw, loss and invalid-move rates and their Wilson 95 % intervals, and the mean reward
    (from eval/<phase>/summary.json)."""
    run = Path(run_dir)
    rows = read_metrics(run / "metrics.jsonl") if (run / "metrics.jsonl").is_file() else []
    t = training_seconds(rows)
    warm = {k: v for r in rows for k, v in r.items() if k.startswith("warmup/")}
    lines = [
        f"Training time (evaluation excluded): warm-up {t['warmup_s'] / 60:.1f} min + "
        f"{int(t['steps'])} self-play steps {t['selfplay_s'] / 60:.1f} min = "
        f"{(t['warmup_s'] + t['selfplay_s']) / 60:.1f} min.",
        "",
    ]
    if warm:
        lines += [
            "Format probe of the warm-up (valid-move rate of sampled answers, strict / lenient parsing): "
            f"before {warm.get('warmup/valid_rate_strict_before', float('nan')):.3f} / "
            f"{warm.get('warmup/valid_rate_lenient_before', float('nan')):.3f}, after "
            f"{warm.get('warmup/valid_rate_strict_after', float('nan')):.3f} / "
            f"{warm.get('warmup/valid_rate_lenient_after', float('nan')):.3f}.",
            "",
        ]
    lines += [
        "| phase | step | game vs opponent | seat | games | win rate [95 % CI] | draw rate [95 % CI] | "
        "loss rate [95 % CI] | invalid rate [95 % CI] | mean reward [95 % CI] |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    found = False
    for phase, folder in PHASES.items():
        label = PHASE_LABELS[phase]
        path = run / "eval" / folder / "summary.json"
        if not path.is_file():
            continue
        found = True
        with summary_errors(path):
            summary = json.loads(path.read_text(encoding="utf-8"))
            for key, res in summary.get("results", {}).items():
                for seat in ("seat0", "seat1", "all"):
                    b = res.get(seat, {})
                    if not b.get("games"):
                        continue
                    lines.append(
                        f"| {label} | {_md(summary.get('step', ''))} | {_md(key)} | {seat.replace('seat', '')} | "
                        f"{_md(b['games'])} | {_pct_ci(b['win_rate'], b.get('win_ci'))} | {_optional(b, 'draw')} | "
                        f"{_optional(b, 'loss')} | {_pct_ci(b['invalid_rate'], b.get('invalid_ci'))} | "
                        f"{_pct_ci(b['mean_reward'], b.get('mean_reward_ci'))} |"
                    )
    if not found:
        raise UserError(f"{run} has no eval/<phase>/summary.json; evaluate the run first")
    return "\n".join(lines) + "\n"


def phase_summary(run_dir: Path) -> list[dict[str, Any]]:
    """One row per phase (base, after warm-up, after self-play): invalid and win rates per game and opponent."""
    warm = {
        k: v for r in read_metrics(run_dir / "metrics.jsonl") for k, v in r.items() if k.startswith("warmup/")
    }
    rows = []
    for phase, folder in PHASES.items():
        path = run_dir / "eval" / folder / "summary.json"
        if not path.is_file():
            continue
        summary = json.loads(path.read_text(encoding="utf-8"))
        row: dict[str, Any] = {"phase": folder[2:], "step": summary.get("step")}
        if phase == "base" and warm:
            row["valid_rate_strict"] = warm.get("warmup/valid_rate_strict_before")
            row["valid_rate_lenient"] = warm.get("warmup/valid_rate_lenient_before")
        if phase == "warmup" and warm:
            row["valid_rate_strict"] = warm.get("warmup/valid_rate_strict_after")
            row["valid_rate_lenient"] = warm.get("warmup/valid_rate_lenient_after")
        for key, s in summary["results"].items():
            row[f"{key} win"] = s["all"]["win_rate"]
            row[f"{key} invalid"] = s["all"]["invalid_rate"]
        rows.append(row)
    return rows


def format_phases(rows: list[dict[str, Any]]) -> str:
    """The phase table as plain text: phase, valid rates, then win / invalid rate per opponent."""
    lines = []
    for row in rows:
        cells = [f"{row['phase']:<15}"]
        for k in ("valid_rate_strict", "valid_rate_lenient"):
            if row.get(k) is not None:
                cells.append(f"{k.replace('_rate', '')} {row[k]:.2f}")
        for k, v in row.items():
            if k.endswith(" win"):
                game = k[: -len(" win")]
                cells.append(f"{game}: win {v:.2f}, invalid {row.get(game + ' invalid', float('nan')):.2f}")
        lines.append("  " + "  ".join(cells))
    return "\n".join(lines)

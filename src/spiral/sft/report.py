"""The `spiral sft` part of a run's report: the expert data and the held-out numbers before and after."""

from __future__ import annotations

import html
import json
from pathlib import Path


def sft_section(run: Path) -> str:
    """HTML from RUN/sft.json; empty when the run is not an SFT run."""
    from runkit.report import table_html

    path = run / "sft.json"
    if not path.is_file():
        return ""
    try:
        s = json.loads(path.read_text(encoding="utf-8"))
        before, after = s["before"], s["after"]
        rows = [{"measure": k, "before": before[k], "after": after.get(k, "")} for k in before]
        moves = ", ".join(f"{html.escape(str(m))} {n}" for m, n in sorted(s.get("moves", {}).items()))
        head = (
            f"<p>expert <code>{html.escape(str(s['expert']))}</code> against "
            f"{html.escape(', '.join(map(str, s.get('opponents', []))))}: {int(s['sft/expert_turns'])} expert turns "
            f"from {int(s['sft/expert_games'])} games ({int(s['sft/distinct_prompts'])} distinct prompts; moves: "
            f"{moves}); {int(s['updates'])} updates in {float(s['fine_tune_seconds']):.0f} s, training loss "
            f"{float(s['train_loss']):.3f}. Held out: {int(s['sft/heldout_turns'])} expert turns of other deals "
            "(loss: mean token NLL of the expert's responses; agreement: the model's greedy move is the expert's).</p>"
        )
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        return f"<p><em>{html.escape(str(path))} cannot be read ({html.escape(str(e)[:120])})</em></p>"
    return head + table_html(rows, ["measure", "before", "after"])

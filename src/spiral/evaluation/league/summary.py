"""What a league writes: league.json (ratings, the win / draw / loss matrix and per-pair results with 95 %
intervals), league.md (the same as Markdown tables) and, for `spiral report`, the same tables as HTML."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from spiral.evaluation.games import summarize_games
from spiral.evaluation.league.players import Player
from spiral.evaluation.league.runner import flipped
from spiral.phases import _md, fmt_ci

BLOCK_KEYS = ("games", "win_rate", "win_ci", "draw_rate", "draw_ci", "loss_rate", "loss_ci", "invalid_rate",
              "invalid_ci", "mean_reward", "mean_reward_ci", "mean_turns")  # fmt: skip


def league_json(results: dict[str, Any], players: list[Player], meta: dict[str, Any]) -> dict[str, Any]:
    """The league's JSON document from League.run's results."""
    by_label = {p.label: p for p in players}
    games: dict[str, Any] = {}
    for env_id, res in results.items():
        pairs, matrix = {}, {label: {} for label in res["labels"]}
        for (a, b), rs in res["pairs"].items():
            s = summarize_games(rs)
            pairs[f"{a} vs {b}"] = s
            matrix[a][b] = {k: s["all"][k] for k in BLOCK_KEYS}
            back = summarize_games([flipped(r, a) for r in rs])["all"]
            matrix[b][a] = {k: back[k] for k in BLOCK_KEYS}
        games[env_id] = {
            "ratings": res["ratings"].table(),
            "ranking": res["ratings"].ranking(),
            "pairs": pairs,
            "matrix": matrix,
            "chunks": len(res["order"]),
        }
    return {
        **meta,
        "kind": "league",
        "players": {
            label: {"spec": p.spec, "kind": p.kind, "run": p.run, "step": p.step, "series": p.series}
            for label, p in by_label.items()
        },
        "games": games,
    }


def rating_rows(doc: dict[str, Any], env_id: str) -> list[dict[str, Any]]:
    """One row per player of a game, best first."""
    g = doc["games"][env_id]
    rows = []
    for rank, label in enumerate(g["ranking"], 1):
        r, p = g["ratings"][label], doc["players"].get(label, {})
        rows.append({
            "rank": rank, "player": label, "kind": p.get("kind", ""),
            "step": "" if p.get("step") is None else p["step"], "mu": f"{r['mu']:.2f}",
            "sigma": f"{r['sigma']:.2f}", "95 % interval": f"[{r['ci'][0]:.2f}, {r['ci'][1]:.2f}]",
            "ordinal (mu - 3 sigma)": f"{r['ordinal']:.2f}", "games": r["games"],
        })  # fmt: skip
    return rows


def _cells(g: dict[str, Any]):
    """(row player, column player, matrix cell or None) for every ordered pair, best players first."""
    for a in g["ranking"]:
        for b in g["ranking"]:
            yield a, b, g["matrix"].get(a, {}).get(b)


def pair_rows(doc: dict[str, Any], env_id: str) -> list[dict[str, Any]]:
    """One row per ordered pair (player, opponent): rates and mean reward with 95 % intervals."""
    rows = []
    for a, b, cell in _cells(doc["games"][env_id]):
        if cell is not None:
            rows.append({
                "player": a, "opponent": b, "games": cell["games"],
                "win [95 % CI]": f"{cell['win_rate']:.3f} {fmt_ci(cell['win_ci'])}",
                "draw [95 % CI]": f"{cell['draw_rate']:.3f} {fmt_ci(cell['draw_ci'])}",
                "loss [95 % CI]": f"{cell['loss_rate']:.3f} {fmt_ci(cell['loss_ci'])}",
                "invalid": f"{cell['invalid_rate']:.3f}",
                "mean reward [95 % CI]": f"{cell['mean_reward']:.3f} {fmt_ci(cell['mean_reward_ci'])}",
            })  # fmt: skip
    return rows


def matrix_rows(doc: dict[str, Any], env_id: str) -> list[dict[str, Any]]:
    """The win / draw / loss matrix: row player against column player, best first."""
    g = doc["games"][env_id]
    rows: dict[str, dict[str, Any]] = {a: {"player \\ opponent": a} for a in g["ranking"]}
    for a, b, cell in _cells(g):
        rows[a][b] = (
            ""
            if cell is None
            else " / ".join(f"{cell[k]:.2f}" for k in ("win_rate", "draw_rate", "loss_rate"))
        )
    return list(rows.values())


def md_table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return ["(no games)"]
    cols = list(rows[0])
    lines = ["| " + " | ".join(_md(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_md(r[c]) for c in cols) + " |" for r in rows]
    return lines


def _intro(doc: dict[str, Any], env_id: str) -> str:
    c = doc.get("config", {})
    g = doc["games"][env_id]
    kwargs = c.get("env_kwargs", {}).get(env_id)
    return (
        f"{c.get('schedule', '')} schedule, {g['chunks']} chunks of {c.get('chunk')} games, seed {c.get('seed')}"
        f"{f', options {json.dumps(kwargs)}' if kwargs else ''}; ratings: openskill {c.get('rating')} "
        f"(tau {c.get('tau')}), one rating update per {c.get('rate_by', 'game')}, 95 % interval mu +- 1.96 sigma. Evaluation rules: strict parsing, an invalid move "
        "loses. Matrix cells: win / draw / loss rates of the row player; intervals are Wilson (rates) and "
        "normal (mean reward)."
    )


def league_markdown(doc: dict[str, Any]) -> str:
    """league.md: per game, the ratings, the matrix and the per-pair table."""
    lines = ["# League", ""]
    for env_id in doc["games"]:
        lines += [f"## {env_id}", "", _intro(doc, env_id), "", "### Ratings", ""]
        lines += md_table(rating_rows(doc, env_id))
        lines += ["", "### Win / draw / loss matrix (row player's rates)", ""]
        lines += md_table(matrix_rows(doc, env_id))
        lines += ["", "### Pairs", ""]
        lines += md_table(pair_rows(doc, env_id))
        lines.append("")
    return "\n".join(lines)


def league_html(folder: Path) -> str:
    """The league in `folder` (league.json and its figures) as HTML for the run report."""
    from runkit.report import image_html, table_html

    doc = json.loads((folder / "league.json").read_text(encoding="utf-8"))
    parts = []
    for env_id in doc["games"]:
        parts.append(f"<h3>{html.escape(env_id)}</h3><p>{html.escape(_intro(doc, env_id))}</p>")
        parts.append(table_html(rating_rows(doc, env_id)))
        fig = folder / f"ratings_{env_id}.png"
        if fig.is_file():
            parts.append(image_html(fig, f"ratings {env_id}"))
        parts.append(
            "<h4>Win / draw / loss matrix (row player's rates)</h4>" + table_html(matrix_rows(doc, env_id))
        )
        parts.append(
            f"<details><summary>pairs with 95 % intervals</summary>{table_html(pair_rows(doc, env_id))}</details>"
        )
    return "".join(parts)


def league_sections(run: Path) -> str:
    """Every league of a run folder (RUN/eval/**/league.json, or the folder itself when it is a league) as
    HTML; empty when there is none."""
    found = [run] if (run / "league.json").is_file() else []
    if (run / "eval").is_dir():
        found += sorted(p.parent for p in (run / "eval").rglob("league.json"))
    parts = []
    for folder in found:
        try:
            body = league_html(folder)
        except (ValueError, KeyError, TypeError, AttributeError) as e:  # a torn or foreign league.json
            body = f"<p><em>{html.escape(str(folder / 'league.json'))} cannot be read ({html.escape(str(e)[:120])})</em></p>"
        parts.append(
            f"<h3>{html.escape(str(folder.relative_to(run)) if folder != run else folder.name)}</h3>{body}"
        )
    return "".join(parts)

"""The league figure: rating against training step for the checkpoints of each run added with --run (95 %
intervals as error bars), every other player as a horizontal line with its interval as a band. A league
without such a series draws every player's rating with its interval instead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

Z95 = 1.96


def rating_figure(doc: dict[str, Any], env_id: str, path: Path) -> Path:
    """Draw the figure of one game of a league document (league.json) into `path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g, players = doc["games"][env_id], doc["players"]
    ratings = g["ratings"]
    series: dict[str, list[tuple[int, str]]] = {}
    others = []
    for label in g["ranking"]:
        p = players.get(label, {})
        if p.get("series") and p.get("step") is not None:
            series.setdefault(p["series"], []).append((p["step"], label))
        else:
            others.append(label)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    if series:
        for i, (name, points) in enumerate(sorted(series.items())):
            points.sort()
            xs = [s for s, _ in points]
            ys = [ratings[label]["mu"] for _, label in points]
            err = [Z95 * ratings[label]["sigma"] for _, label in points]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, color=colors[i % len(colors)], label=name)
        for j, label in enumerate(others):
            r = ratings[label]
            color = colors[(len(series) + j) % len(colors)]
            ax.axhline(r["mu"], linestyle="--", linewidth=1.2, color=color, label=f"{label} ({r['mu']:.1f})")
            ax.axhspan(r["mu"] - Z95 * r["sigma"], r["mu"] + Z95 * r["sigma"], color=color, alpha=0.08)
        ax.set_xlabel("training step")
        ax.set_ylabel("rating mu, 95 % interval")
    else:
        labels = list(reversed(g["ranking"]))
        ax.errorbar([ratings[x]["mu"] for x in labels], range(len(labels)),
                    xerr=[Z95 * ratings[x]["sigma"] for x in labels], fmt="o", capsize=3)  # fmt: skip
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_xlabel("rating mu, 95 % interval")
    ax.set_title(
        f"League ratings on {env_id} (openskill {doc.get('config', {}).get('rating', '')})", fontsize=10
    )
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

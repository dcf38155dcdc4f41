"""Self-contained HTML reports: tables, text and PNG plots embedded as base64."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from runkit.io import atomic_write_text

_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
    "th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}pre{background:#f7f7f7;padding:1em;"
    "white-space:pre-wrap;font-size:12px}h2{border-bottom:1px solid #ddd}"
)


def table_html(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """An HTML table from a list of dicts."""
    if not rows:
        return "<p><em>no rows</em></p>"
    columns = columns or list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(r.get(c, '')))}</td>" for c in columns) + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def image_html(png: str | Path | bytes, alt: str = "") -> str:
    """An <img> with the PNG inlined."""
    data = png if isinstance(png, bytes) else Path(png).read_bytes()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}"/>'


def write_report(path: str | Path, title: str, sections: list[tuple[str, str]]) -> Path:
    """Write one HTML page; `sections` are (heading, inner HTML) pairs."""
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
    ]
    for heading, inner in sections:
        parts.append(f"<section><h2>{html.escape(heading)}</h2>{inner}</section>")
    parts.append("</body></html>")
    return atomic_write_text(path, "\n".join(parts))

"""Results files and self-contained HTML reports built from plotly figures."""
from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np
import torch


def _plain(obj):
    """JSON-ready copy: tensors and arrays to lists, NaN/inf to None (strict JSON)."""
    if isinstance(obj, torch.Tensor):
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def save_json(path: str | Path, data: dict) -> Path:
    """Write `data` as indented JSON (tensors, arrays and paths converted)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_plain(data), indent=2))
    return path


class Html(str):
    """Trusted HTML to insert into a report as is (a `str` section is escaped prose)."""


def _table(rows: list[dict]) -> str:
    if not rows:
        return "<p><em>(no rows)</em></p>"
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row.values()) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f4f4f4}.meta{color:#666;font-size:.85em}pre{background:#f7f7f7;padding:.6em;overflow:auto}"""


def write_report(path: str | Path, title: str, sections: list[tuple[str, object]], metadata: dict | None = None) -> Path:
    """Write a self-contained HTML page; works offline (plotly.js is embedded once).

    Each section is (heading, content) where content is a plotly Figure, a list of dict
    rows (a table), `Html` (inserted as is), or a string of prose (escaped; blank lines
    start paragraphs).
    """
    import plotly.graph_objects as go

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    parts, js_done = [], False
    for heading, content in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        if isinstance(content, go.Figure):
            parts.append(content.to_html(full_html=False, include_plotlyjs=not js_done))
            js_done = True
        elif isinstance(content, Html):
            parts.append(content)
        elif isinstance(content, list):
            parts.append(_table(content))
        else:
            parts.extend(f"<p>{html.escape(p)}</p>" for p in str(content).split("\n\n"))
    meta = ""
    if metadata:
        meta = f"<h2>Metadata</h2><pre class='meta'>{html.escape(json.dumps(_plain(metadata), indent=2))}</pre>"
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>{''.join(parts)}{meta}</body></html>")
    path.write_text(page, encoding="utf-8")
    return path

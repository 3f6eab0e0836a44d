"""Results files and offline HTML reports built from plotly figures.

A report folder holds one `plotly.min.js` (the installed plotly package's bundled copy), which
every page in that folder loads with a relative `<script src>`: pages stay small and open
offline, and ten reports in a folder cost one copy of plotly.js, not ten.
"""
from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path

import numpy as np
import torch

PLOTLY_JS = "plotly.min.js"  # file name of the shared plotly.js next to the pages that use it


def to_jsonable(obj):
    """JSON-ready copy of `obj`: tensors and arrays to lists, NaN/inf to None (strict JSON), paths to str."""
    if isinstance(obj, torch.Tensor):
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def save_json(path: str | Path, data: dict) -> Path:
    """Write `data` as indented strict JSON (via `to_jsonable`); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(data), indent=2, allow_nan=False))
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
        # a NaN is a figure that was not computed (e.g. a bootstrap refused on too few units), not a number
        return f"{value:.4g}" if math.isfinite(value) else "n/a"
    return str(value)


def _write_plotlyjs(folder: Path) -> Path:
    """`folder/plotly.min.js` from the installed plotly, written only when absent or different."""
    from plotly.offline import get_plotlyjs

    target = folder / PLOTLY_JS
    code = get_plotlyjs().encode("utf-8")
    if target.exists() and target.stat().st_size == len(code) and target.read_bytes() == code:
        return target
    tmp = folder / f".{PLOTLY_JS}.{os.getpid()}.tmp"  # atomic: a reader never sees half a file
    tmp.write_bytes(code)
    os.replace(tmp, target)
    return target


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f4f4f4}.meta{color:#666;font-size:.85em}pre{background:#f7f7f7;padding:.6em;overflow:auto}"""


def write_report(path: str | Path, title: str, sections: list[tuple[str, object]], metadata: dict | None = None) -> Path:
    """Write an HTML page that works offline; returns its path.

    Each section is (heading, content) where content is a plotly Figure, a list of dict
    rows (a table), `Html` (inserted as is), or a string of prose (escaped; blank lines
    start paragraphs). A page with figures loads `plotly.min.js` from its own folder, which is
    written there once and shared by every page in the folder.
    """
    import plotly.graph_objects as go

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    parts, has_figure = [], False
    for heading, content in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        if isinstance(content, go.Figure):
            parts.append(content.to_html(full_html=False, include_plotlyjs=False))
            has_figure = True
        elif isinstance(content, Html):
            parts.append(content)
        elif isinstance(content, list):
            parts.append(_table(content))
        else:
            parts.extend(f"<p>{html.escape(p)}</p>" for p in str(content).split("\n\n"))
    script = ""
    if has_figure:
        _write_plotlyjs(path.parent)
        script = f"<script src='{PLOTLY_JS}' charset='utf-8'></script>"
    meta = ""
    if metadata:
        meta = f"<h2>Metadata</h2><pre class='meta'>{html.escape(json.dumps(to_jsonable(metadata), indent=2))}</pre>"
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>{script}"
            f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>{''.join(parts)}{meta}</body></html>")
    path.write_text(page, encoding="utf-8")
    return path

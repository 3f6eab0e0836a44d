"""`metalens demo`: the main job on the embedded model, one quick run per area, one index page."""
from __future__ import annotations

import html
import importlib
import time
import traceback
from pathlib import Path

import metalens
from metalens.report import Html, save_json, write_report

# (area, module, function): each takes (model, out) and returns a summary dict whose "headline"
# is one short string with the area's key numbers.
AREA_DEMOS = [
    ("probes", "metalens.probes", "demo"),
    ("steering", "metalens.steering", "demo"),
    ("circuits", "metalens.circuits", "demo"),
    ("introspection", "metalens.introspect", "demo"),
    ("atlas", "metalens.analyses.atlas", "atlas_demo"),
]


def run_demo(model: metalens.Model | str = metalens.DEFAULT_MODEL, out: str | Path = "reports", *,
             device: str | None = None, areas: list[str] | None = None) -> dict:
    """Run each area's quick demo on one model (a loaded `Model` or a name to load); write
    `out/index.html` and `out/results.json`, and return what results.json holds.

    An area that fails is reported on the index page with its error, and the others still run.
    """
    out = Path(out)
    if isinstance(model, str):
        model = metalens.load_model(model, device=device)
    results, rows, links = {"model": model.metadata(), "areas": {}}, [], []
    for area, module_name, fn_name in AREA_DEMOS:
        if areas and area not in areas:
            continue
        start = time.perf_counter()
        try:
            fn = getattr(importlib.import_module(module_name), fn_name)
            summary = fn(model, out / area)
            status = "ok"
        except Exception as err:  # keep going: one broken area should not hide the others
            summary, status = {"error": repr(err), "traceback": traceback.format_exc()}, "failed"
        seconds = time.perf_counter() - start
        results["areas"][area] = {"status": status, "seconds": seconds, "summary": summary}
        pages = sorted(str(p.relative_to(out)) for p in (out / area).rglob("*.html"))
        rows.append({"area": area, "status": status, "seconds": round(seconds, 1), "headline": _headline(summary)})
        links += [f"<li><a href='{html.escape(p)}'>{html.escape(p)}</a></li>" for p in pages]
        print(f"[demo] {area}: {status} in {seconds:.0f}s -> {out / area}")
    save_json(out / "results.json", results)
    write_report(out / "index.html", f"metalens demo on {model.name}", [
        ("What ran", "Each row is one area's quick demo on the same loaded model; open its report for figures."),
        ("Areas", rows),
        ("Reports", Html(f"<ul>{''.join(links)}</ul>")),
    ], metadata=model.metadata())
    return results


def _headline(summary: dict) -> str:
    """The area's own `headline`; for a summary without one, its first few scalar numbers."""
    if "error" in summary:
        return summary["error"][:200]
    if isinstance(summary.get("headline"), str):
        return summary["headline"]
    items = [f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()
             if isinstance(v, (int, float, str)) and k != "report"]
    return ", ".join(items[:6])

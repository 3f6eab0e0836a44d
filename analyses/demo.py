"""`run_demo`: the main job on the embedded model, one quick run per area, one index page."""
from __future__ import annotations

import html
import importlib
import tempfile
import time
import traceback
from dataclasses import dataclass, field
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
AREAS = [area for area, _, _ in AREA_DEMOS]


@dataclass
class DemoConfig:
    """Which areas' quick demos run (None: all of them, in `AREA_DEMOS` order)."""

    areas: tuple[str, ...] | None = None

    def __post_init__(self):
        unknown = sorted(set(self.areas or ()) - set(AREAS))
        if unknown:
            raise ValueError(f"Unknown area(s) {unknown}: use some of {AREAS}.")
        if self.areas is not None:
            self.areas = tuple(self.areas)


@dataclass
class DemoResult:
    """Per area: {"status": "ok" | "failed", "seconds", "summary"}; `model` is the model's metadata.

    `save(dir)` writes results.json ({"model", "areas"}) and index.html linking every area's reports
    found under `dir`.
    """

    model: dict
    areas: dict[str, dict] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """What results.json holds."""
        return {"model": self.model, "areas": self.areas}

    def save(self, path) -> Path:
        """Write results.json and index.html into `path` (the areas' own reports stay where they ran)."""
        path = Path(path)
        save_json(path / "results.json", self.to_dict())
        rows, links = [], []
        for area, entry in self.areas.items():
            rows.append({"area": area, "status": entry["status"], "seconds": round(entry["seconds"], 1),
                         "headline": _headline(entry["summary"])})
            pages = sorted(str(p.relative_to(path)) for p in (path / area).rglob("*.html"))
            links += [f"<li><a href='{html.escape(p)}'>{html.escape(p)}</a></li>" for p in pages]
        write_report(path / "index.html", f"metalens demo on {self.model.get('model', '?')}", [
            ("What ran", "Each row is one area's quick demo on the same loaded model; open its report for figures."),
            ("Areas", rows),
            ("Reports", Html(f"<ul>{''.join(links)}</ul>")),
        ], metadata=self.model)
        return path

    @classmethod
    def load(cls, path) -> DemoResult:
        """The result `save` wrote into `path`."""
        from metalens.artifact import read_json

        data = read_json(Path(path) / "results.json", "demo results.json")
        if "areas" not in data or "model" not in data:
            raise ValueError(f"{Path(path) / 'results.json'} is not a demo's results.json (no 'model' and 'areas').")
        return cls(data["model"], data["areas"])


def run_demo(model: metalens.Model, config: DemoConfig | None = None, *, out=None,
             progress: bool = True) -> DemoResult:
    """Run each area's quick demo on one loaded model; with `out`, write every area's reports under
    `out/AREA/`, then `out/index.html` and `out/results.json`.

    An area that fails is reported (status "failed", its error) and the others still run. Without
    `out`, the areas' reports go to a temporary folder that is removed; the summaries remain.
    """
    cfg = config or DemoConfig()
    if not isinstance(model, metalens.Model):
        raise TypeError(f"run_demo takes a loaded model (metalens.load_model), not {type(model).__name__}.")
    log = print if progress else (lambda *a, **k: None)
    scratch = tempfile.TemporaryDirectory() if out is None else None
    root = Path(out) if out is not None else Path(scratch.name)
    result = DemoResult(model.metadata())
    try:
        for area, module_name, fn_name in AREA_DEMOS:
            if cfg.areas and area not in cfg.areas:
                continue
            start = time.perf_counter()
            try:
                fn = getattr(importlib.import_module(module_name), fn_name)
                summary, status = fn(model, root / area), "ok"
            except Exception as err:  # keep going: one broken area should not hide the others
                summary, status = {"error": repr(err), "traceback": traceback.format_exc()}, "failed"
            seconds = time.perf_counter() - start
            result.areas[area] = {"status": status, "seconds": seconds, "summary": summary}
            log(f"[demo] {area}: {status} in {seconds:.0f}s -> {root / area}")
        if out is not None:
            result.save(root)
    finally:
        if scratch is not None:
            scratch.cleanup()
    return result


def _headline(summary: dict) -> str:
    """The area's own `headline`; for a summary without one, its first few scalar numbers."""
    if "error" in summary:
        return summary["error"][:200]
    if isinstance(summary.get("headline"), str):
        return summary["headline"]
    items = [f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()
             if isinstance(v, (int, float, str)) and k != "report"]
    return ", ".join(items[:6])

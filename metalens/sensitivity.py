"""Sensitivity of a pipeline: how often it detects a planted effect of known size, and how often it
calls something that was not planted.

A null from an instrument never shown to detect anything cannot be told from a broken instrument.
`measure_sensitivity` runs one trial per (strength, seed) -- the area plants an effect of that
strength and runs its own workflow with its own published detection rule -- and summarises them as
a detection curve with Wilson intervals, the false-positive share (measured in the same runs) and
the smallest strength detected in >= 80 % of seeds. Each trial's record is saved as it finishes, so
an interrupted sweep resumes where it stopped, a rerun with more strengths or seeds extends it, and a
rerun with other settings is refused.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from metalens.artifact import read_json
from metalens.report import save_json, to_jsonable, write_report
from metalens.stats import wilson_ci

DETECTED_SHARE = 0.8  # min_detectable_strength: the smallest strength detected in at least this share of seeds
SETTINGS_FILE = "sensitivity-settings.json"
RUNS_DIR = "runs"
RESULT_KEYS = ("detection", "false_positive_share", "false_positive_low", "false_positive_high", "false_positive_n",
               "min_detectable_strength", "strength_unit", "detection_rule", "false_positive_rule", "settings")


@dataclass
class Trial:
    """One (strength, seed) run: was the planted effect detected, was anything unplanted called, and
    whatever the area wants kept (JSON-ready `details`).

    `false_positive=None` says the run cannot show one by design (e.g. a strength-0 run whose outputs
    equal the comparison it is judged against): it is left out of the false-positive share, so runs
    that could never count do not dilute it."""

    detected: bool
    false_positive: bool | None
    details: dict = field(default_factory=dict)


@dataclass
class SensitivityResult:
    """Detection curve, false-positive share and minimal detectable strength of one pipeline.

    `detection` rows: {strength, detected_share, low, high, n_seeds} (Wilson 95 % intervals over seeds).
    `false_positive_share` is over the runs that could show one (all strengths and seeds, less those whose
    trial said None) with its Wilson interval [`false_positive_low`, `false_positive_high`] over
    `false_positive_n` runs (0 runs: share and bounds None). `min_detectable_strength`:
    the smallest strength > 0 detected in >= 80 % of seeds (None if none). `runs` holds each trial's
    record (saved under runs/, not in results.json).
    """

    detection: list[dict]
    false_positive_share: float | None
    false_positive_low: float | None
    false_positive_high: float | None
    false_positive_n: int
    min_detectable_strength: float | None
    strength_unit: str
    detection_rule: str
    false_positive_rule: str
    settings: dict = field(default_factory=dict)
    runs: list[dict] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        """results.json's content: exactly `RESULT_KEYS`."""
        return {k: getattr(self, k) for k in RESULT_KEYS}

    def summary_lines(self) -> list[str]:
        """The terminal summary: one line per strength, then the minimal detectable strength and the
        false-positive share."""
        lines = [f"strength {r['strength']:g}: detected in {r['detected_share']:.2f} of {r['n_seeds']} seeds "
                 f"[{r['low']:.2f}, {r['high']:.2f}]" for r in self.detection]
        mds = self.min_detectable_strength
        lines.append(f"min detectable strength (>= 80 % of seeds): {'none' if mds is None else f'{mds:g}'} "
                     f"({self.strength_unit}); {self._false_positive_text(2)}")
        return lines

    def _false_positive_text(self, digits: int) -> str:
        if not self.false_positive_n:
            return "no run could show a false positive (see the rule)"
        return (f"false-positive share {self.false_positive_share:.{digits}f} [{self.false_positive_low:.{digits}f}, "
                f"{self.false_positive_high:.{digits}f}] over {self.false_positive_n} runs")

    def figure(self):
        """Plotly detection curve: detected share per strength with Wilson intervals, the 80 % line and
        the false-positive share with its interval."""
        import plotly.graph_objects as go

        x = [r["strength"] for r in self.detection]
        y = [r["detected_share"] for r in self.detection]
        fig = go.Figure(go.Scatter(x=x, y=y, mode="lines+markers", name="detected share",
                                   error_y=dict(type="data", symmetric=False,
                                                array=[r["high"] - r["detected_share"] for r in self.detection],
                                                arrayminus=[r["detected_share"] - r["low"] for r in self.detection])))
        fig.add_hline(y=DETECTED_SHARE, line_dash="dot", annotation_text="80 % of seeds")
        if not self.false_positive_n:
            return self._layout(fig)
        fig.add_hrect(y0=self.false_positive_low, y1=self.false_positive_high, fillcolor="red", opacity=0.12,
                      line_width=0)
        fig.add_hline(y=self.false_positive_share, line_color="red", line_dash="dash",
                      annotation_text=f"false-positive share {self.false_positive_share:.2f}")
        return self._layout(fig)

    def _layout(self, fig):
        fig.update_layout(xaxis_title=f"planted strength ({self.strength_unit})", yaxis_title="share of seeds",
                          yaxis_range=[-0.05, 1.05], template="plotly_white")
        return fig

    def save(self, path: str | Path) -> Path:
        """Write results.json and report.html into `path` (the runs/ records are written as trials finish)."""
        out = Path(path)
        save_json(out / "results.json", self.to_dict())
        mds = self.min_detectable_strength
        prose = (f"Planted strength unit: {self.strength_unit}.\n\nDetected when: {self.detection_rule}\n\n"
                 f"False positive when: {self.false_positive_rule}\n\nSmallest strength detected in >= 80 % of "
                 f"seeds: {'none of those tried' if mds is None else f'{mds:g}'}. "
                 f"{self._false_positive_text(3).capitalize()} (Wilson 95 %).")
        write_report(out / "report.html", f"Sensitivity: {self.settings.get('title', 'planted effect')}",
                     [("Summary", prose), ("Detection curve", self.figure()), ("Detection by strength", self.detection),
                      ("Runs", [{k: v for k, v in r.items() if k != "details"} for r in self.runs])], self.settings)
        return out

    @classmethod
    def load(cls, path: str | Path) -> "SensitivityResult":
        """Read results.json (and the runs/ records) from a folder written by `save`."""
        out = Path(path)
        if not (out / "results.json").exists():
            raise FileNotFoundError(f"No results.json in {out}: point at a folder written by a sensitivity run.")
        data = read_json(out / "results.json", "sensitivity results")
        missing = [k for k in RESULT_KEYS if k not in data]
        if missing:
            raise ValueError(f"{out / 'results.json'} lacks {missing}: it was not written by SensitivityResult.save.")
        return cls(**{k: data[k] for k in RESULT_KEYS}, runs=_read_runs(out))


def summarize_trials(runs: list[dict], strengths, *, unit: str, rule: str, false_positive_rule: str,
                     settings: dict | None = None) -> SensitivityResult:
    """A `SensitivityResult` from trial records ({strength, seed, detected, false_positive, ...})."""
    detection = []
    for s in strengths:
        hits = [bool(r["detected"]) for r in runs if r["strength"] == s]
        ci = wilson_ci(sum(hits), len(hits))
        detection.append({"strength": s, "detected_share": ci.estimate, "low": ci.low, "high": ci.high,
                          "n_seeds": len(hits)})
    could = [bool(r["false_positive"]) for r in runs if r["false_positive"] is not None]
    fp = wilson_ci(sum(could), len(could))
    fp_share, fp_low, fp_high = (fp.estimate, fp.low, fp.high) if could else (None, None, None)
    found = [r["strength"] for r in detection if r["strength"] > 0 and r["n_seeds"]
             and r["detected_share"] >= DETECTED_SHARE]
    return SensitivityResult(detection, fp_share, fp_low, fp_high, len(could), min(found) if found else None, unit, rule,
                             false_positive_rule, dict(settings or {}), list(runs))


def check_strengths(strengths) -> list[float]:
    """Sorted distinct finite strengths >= 0 (0 is the unplanted run); raises naming the bad value."""
    values = [float(s) for s in strengths]
    if not values:
        raise ValueError("No strengths given: pass e.g. strengths=(0, 0.5, 1, 2) (0 is the unplanted run).")
    bad = [s for s in values if not np.isfinite(s) or s < 0]
    if bad:
        raise ValueError(f"Strengths must be finite and >= 0 (0 = unplanted), got {bad}.")
    return sorted(set(values))


def check_seeds(seeds) -> int:
    """The number of seeds K (seeds 0..K-1): an integer >= 1; raises naming the bad value."""
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise ValueError(f"seeds must be an integer >= 1 (seeds 0..K-1), got {seeds!r}.")
    return seeds


def measure_sensitivity(trial: Callable[[float, int], Trial], strengths, seeds, *, unit: str, rule: str,
                        false_positive_rule: str, settings: dict | None = None, out: str | Path | None = None,
                        progress: bool = True) -> SensitivityResult:
    """Run `trial(strength, seed)` for every strength x seed and summarise (see `SensitivityResult`).

    seeds: a count K (seeds 0..K-1) or the seed values. `unit` says what one unit of strength is;
    `rule` and `false_positive_rule` say in words what `trial` counts as detected and as a false
    positive. With `out`, each trial's record goes to out/runs/ as it finishes; a rerun skips finished
    trials, so a rerun with more strengths or seeds extends the sweep (the result covers the rerun's grid),
    and refuses when the unit, rules or `settings` differ from the first run's.
    """
    strengths = check_strengths(strengths)
    seeds = list(range(seeds)) if isinstance(seeds, int) else [int(k) for k in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be a positive count or distinct seed values, got {seeds}.")
    plan = to_jsonable({"strengths": strengths, "seeds": seeds, "strength_unit": unit, "detection_rule": rule,
                        "false_positive_rule": false_positive_rule, "settings": settings or {}})
    done: dict[tuple, dict] = {}
    if out is not None:
        out = Path(out)
        _check_plan(out, plan)
        done = {(r["strength"], r["seed"]): r for r in _read_runs(out)}
    runs = []
    # Seed by seed, every strength: a sweep cut short still spans the whole curve.
    todo = [(s, k) for k in seeds for s in strengths]
    for s, k in tqdm(todo, desc="sensitivity", disable=not progress):
        if (s, k) in done:
            runs.append(done[(s, k)])
            continue
        t = trial(s, k)
        record = to_jsonable({"strength": s, "seed": k, "detected": bool(t.detected),
                              "false_positive": None if t.false_positive is None else bool(t.false_positive),
                              "details": t.details})
        if out is not None:
            if not (out / SETTINGS_FILE).exists():  # recorded once the first trial succeeded
                save_json(out / SETTINGS_FILE, plan)
            _write_atomic(out / RUNS_DIR / _run_name(s, k), record)
        runs.append(record)
    result = summarize_trials(runs, strengths, unit=unit, rule=rule, false_positive_rule=false_positive_rule,
                              settings=settings)
    if out is not None:
        save_json(out / SETTINGS_FILE, plan)  # the grid of the latest run
        result.save(out)
    return result


def _run_name(strength: float, seed: int) -> str:
    return f"strength={strength!r}_seed={seed}.json"


def _write_atomic(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # a crash never leaves half a record
    tmp.write_text(json.dumps(record, indent=1, allow_nan=False))
    os.replace(tmp, path)


def _read_runs(out: Path) -> list[dict]:
    folder = out / RUNS_DIR
    return [read_json(p, "sensitivity run record") for p in sorted(folder.glob("*.json"))] if folder.exists() else []


GRID = ("strengths", "seeds")  # free to change between reruns: records are kept per (strength, seed)


def _check_plan(out: Path, plan: dict) -> None:
    """Refuse to resume into `out` when its recorded settings, other than the grid, differ from `plan`."""
    path = out / SETTINGS_FILE
    if not path.exists():
        return
    old = read_json(path, "sensitivity settings")
    differ = sorted(k for k in set(old) | set(plan) if k not in GRID and old.get(k) != plan.get(k))
    if differ:
        details = "; ".join(f"{k}: {old.get(k)!r} -> {plan.get(k)!r}" for k in differ)
        raise ValueError(f"{out} holds a sensitivity run with other settings ({details}): rerun with the same "
                         "settings to resume or extend it (strengths and seeds may change), or pick another --out.")

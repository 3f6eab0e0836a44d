"""Sensitivity of neurofeedback *reporting*: plant a reporter of one axis at several strengths, run
`run_neurofeedback` as published, and count how often that axis -- and any other -- is called reportable."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from metalens.probes.neurofeedback import NeurofeedbackConfig, run_neurofeedback
from metalens.probes.planted import UNIT
from metalens.probes.space import ALPHA, REPORTABLE_RULE
from metalens.sensitivity import SensitivityResult, Trial, check_seeds, check_strengths, measure_sensitivity

DEFAULT_STRENGTHS = (0.0, 0.25, 0.5, 1.0, 2.0)

FALSE_POSITIVE_RULE = ("any axis other than the planted one called reportable in the run; at strength 0 (nothing "
                       "planted) any reportable axis, the planted one included")


@dataclass
class ReportingSensitivityConfig:
    """What to plant (`axis`), at which `strengths` (unit: `metalens.probes.planted.UNIT`), over how many
    `seeds` (each a whole `run_neurofeedback` with `NeurofeedbackConfig.seed` = seed), on the
    neurofeedback settings `neurofeedback` (its own seed is replaced by each seed)."""

    neurofeedback: NeurofeedbackConfig = field(default_factory=NeurofeedbackConfig.quick)
    axis: str = "PC1"
    strengths: tuple[float, ...] = DEFAULT_STRENGTHS
    seeds: int = 3

    def __post_init__(self):
        self.strengths = tuple(check_strengths(self.strengths))
        self.seeds = check_seeds(self.seeds)
        if not isinstance(self.neurofeedback, NeurofeedbackConfig):
            raise TypeError("neurofeedback must be a NeurofeedbackConfig, e.g. NeurofeedbackConfig.quick(layer=9).")


def reporting_trial(model, config: ReportingSensitivityConfig, strength: float, seed: int) -> Trial:
    """One planted run: `run_neurofeedback` with the reporter planted, judged by its own summary's
    `reportable` flags (the published rule)."""
    cfg = replace(config.neurofeedback, seed=seed, planted_axis=config.axis, planted_strength=float(strength))
    result = run_neurofeedback(model, cfg, progress=False)
    rows = result.summary["rows"]
    reportable = [r["axis"] for r in rows if r["reportable"]]
    detected = config.axis in reportable
    false_positive = any(a != config.axis for a in reportable) or (strength == 0 and detected)
    keep = ("axis", "report_accuracy", "shuffled_accuracy", "others_accuracy", "report_p_holm",
            "report_p_vs_others_holm", "beats_shuffled", "reportable")
    return Trial(detected, false_positive, {"reportable": reportable, "rows": [{k: r.get(k) for k in keep} for r in rows],
                                            "seconds": result.data["metadata"]["seconds"]})


def run_reporting_sensitivity(model, config: ReportingSensitivityConfig | None = None, *, out: str | Path | None = None,
                              progress: bool = True) -> SensitivityResult:
    """Detection curve of neurofeedback reporting on `model`; with `out`, resumable (runs/ records),
    results.json and report.html there."""
    config = config or ReportingSensitivityConfig()
    settings = {"title": f"neurofeedback reporting, {config.axis} planted, {model.name}", "model": model.name,
                "pipeline": "run_neurofeedback", "axis": config.axis, "alpha": ALPHA,
                "neurofeedback": {k: v for k, v in asdict(config.neurofeedback).items()
                                  if k not in ("seed", "planted_axis", "planted_strength")}}
    rule = (f"{config.axis} called reportable by run_neurofeedback's summary (alpha {ALPHA}): {REPORTABLE_RULE}")
    return measure_sensitivity(lambda s, k: reporting_trial(model, config, s, k), config.strengths, config.seeds,
                               unit=UNIT, rule=rule, false_positive_rule=FALSE_POSITIVE_RULE, settings=settings,
                               out=out, progress=progress)

"""Sensitivity of neurofeedback: plant a reporter (reporting stage) or a controller (2x2 control stage) of one
axis at several strengths, run `run_neurofeedback` as published, and count how often that axis -- and any
other -- is called reportable / controllable."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from metalens.probes.neurofeedback import NeurofeedbackConfig, run_neurofeedback
from metalens.probes.planted import CONTROL_UNIT, UNIT
from metalens.probes.space import ALPHA, CONTROLLABLE_RULE, REPORTABLE_RULE
from metalens.sensitivity import SensitivityResult, Trial, check_seeds, check_strengths, measure_sensitivity

DEFAULT_STRENGTHS = (0.0, 0.25, 0.5, 1.0, 2.0)
# Wide on purpose: implicit control (one sentence, four contexts) sees ~0.001 SD on gemma-3-270m, explicit control far less.
DEFAULT_CONTROL_STRENGTHS = (0.0, 0.001, 0.01, 0.1, 1.0)
CONTROL_KINDS = ("implicit", "explicit")


def false_positive_rule(called: str) -> str:
    """The false-positive rule of a stage whose verdict calls an axis `called` (reportable, controllable)."""
    return (f"any axis other than the planted one called {called} in the run; at strength 0 (nothing "
            f"planted) any {called} axis, the planted one included")


FALSE_POSITIVE_RULE = false_positive_rule("reportable")


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


def _quick_paper() -> NeurofeedbackConfig:
    """Quick sizes under the paper protocol, implicit control of every axis, no explicit control."""
    return NeurofeedbackConfig.quick(protocol="paper", implicit_targets=None, explicit_targets=())


@dataclass
class ControlSensitivityConfig(ReportingSensitivityConfig):
    """As `ReportingSensitivityConfig`, for a planted controller (unit: `metalens.probes.planted.CONTROL_UNIT`)
    judged by the `kind` ("implicit" or "explicit") control stage's verdict. The neurofeedback settings
    must use the paper protocol (the 2x2 flip design, the only one that calls an axis controllable) and
    test the planted axis as a target of that kind; default: quick sizes, implicit control of every axis."""

    neurofeedback: NeurofeedbackConfig = field(default_factory=_quick_paper)
    strengths: tuple[float, ...] = DEFAULT_CONTROL_STRENGTHS
    kind: str = "implicit"

    def __post_init__(self):
        super().__post_init__()
        if self.kind not in CONTROL_KINDS:
            raise ValueError(f"kind must be one of {CONTROL_KINDS}, not {self.kind!r}.")
        nf = self.neurofeedback
        if nf.protocol != "paper":
            raise ValueError("Control is called controllable only by the 2x2 flip design: use "
                             "NeurofeedbackConfig(protocol='paper', ...) (CLI: --protocol paper).")
        targets = nf.implicit_targets if self.kind == "implicit" else nf.explicit_targets
        if targets is not None and self.axis not in targets:  # implicit_targets None: every axis
            raise ValueError(f"The planted axis {self.axis} is not among the {self.kind} control targets "
                             f"{list(targets)}: add it (CLI: --{self.kind}-targets), or the plant never acts.")
        trials = nf.implicit_trials if self.kind == "implicit" else nf.explicit_trials
        if trials < 2:
            raise ValueError(f"{self.kind}_trials={trials}: the paired test over trials needs at least 2 "
                             f"(CLI: --{self.kind}-trials).")


def _planted_run(model, config: ReportingSensitivityConfig, stage: str, strength: float, seed: int):
    """`run_neurofeedback` on `config.neurofeedback` with `seed`, and `config.axis` planted at `strength` in `stage`."""
    cfg = replace(config.neurofeedback, seed=seed, planted_axis=config.axis, planted_strength=float(strength),
                  planted_stage=stage, cards=False)  # cards describe features; a planted run reports none
    return run_neurofeedback(model, cfg, progress=False)


def _judged(config: ReportingSensitivityConfig, strength: float, called: list[str], details: dict) -> Trial:
    """A trial from the axes a run called: detected when the planted axis is among them; a false positive when
    another one is, or any one at strength 0."""
    detected = config.axis in called
    return Trial(detected, any(a != config.axis for a in called) or (strength == 0 and detected), details)


def reporting_trial(model, config: ReportingSensitivityConfig, strength: float, seed: int) -> Trial:
    """One planted run: `run_neurofeedback` with the reporter planted, judged by its own summary's
    `reportable` flags (the published rule)."""
    result = _planted_run(model, config, "report", strength, seed)
    rows = result.summary["rows"]
    reportable = [r["axis"] for r in rows if r["reportable"]]
    keep = ("axis", "report_accuracy", "shuffled_accuracy", "others_accuracy", "report_p_holm",
            "report_p_vs_others_holm", "beats_shuffled", "reportable")
    return _judged(config, strength, reportable, {"reportable": reportable, "rows": [{k: r.get(k) for k in keep} for r in rows],
                                                  "seconds": result.data["metadata"]["seconds"]})


def control_trial(model, config: ControlSensitivityConfig, strength: float, seed: int) -> Trial:
    """One planted run: `run_neurofeedback` with the controller planted, judged by its own summary's
    `{kind}_controllable` flags (the published rule, 2x2 flip design); details keep each target's effect and
    whether the planted axis' control is also `specific`."""
    result = _planted_run(model, config, "control", strength, seed)
    k = config.kind
    rows = [r for r in result.summary["rows"] if r[f"{k}_controllable"] is not None]  # the kind's targets
    controllable = [r["axis"] for r in rows if r[f"{k}_controllable"]]
    effects = {e["target"]: e for e in result.data[k]["effects"]}
    keep = ("dz_target", "diff", "diff_low", "diff_high", "p_holm", "dz_off_target_max_abs", "label_token_dz",
            "controllable", "specific")
    return _judged(config, strength, controllable, {
        "controllable": controllable, "specific": [r["axis"] for r in rows if r[f"{k}_controllable"] and r[f"{k}_specific"]],
        "effects": [{"target": t, **{x: e.get(x) for x in keep}, "mde_diff": (e.get("mde") or {}).get("value"),
                     "mde_dz": (e.get("mde") or {}).get("value_dz"), "sd_diff": (e.get("mde") or {}).get("sd_diff")}
                    for t, e in effects.items()],
        "planted": result.data[k]["metadata"].get("planted"), "seconds": result.data["metadata"]["seconds"]})


def _settings(model, config: ReportingSensitivityConfig, what: str, **extra) -> dict:
    """The settings a sweep records (a resumed sweep must match them): the neurofeedback config less its seed and plant."""
    return {"title": f"neurofeedback {what}, {config.axis} planted, {model.name}", "model": model.name,
            "pipeline": "run_neurofeedback", "axis": config.axis, "alpha": ALPHA, **extra,
            "neurofeedback": {k: v for k, v in asdict(config.neurofeedback).items()
                              if k not in ("seed", "planted_axis", "planted_strength", "planted_stage", "cards",
                                           "card_texts")  # cards change no measurement
                              # without an SAE its settings are unused: a run from before them still resumes
                              and not (k.startswith("sae") and config.neurofeedback.sae is None)}}


def run_reporting_sensitivity(model, config: ReportingSensitivityConfig | None = None, *, out: str | Path | None = None,
                              progress: bool = True) -> SensitivityResult:
    """Detection curve of neurofeedback reporting on `model`; with `out`, resumable (runs/ records),
    results.json and report.html there."""
    config = config or ReportingSensitivityConfig()
    rule = (f"{config.axis} called reportable by run_neurofeedback's summary (alpha {ALPHA}): {REPORTABLE_RULE}")
    return measure_sensitivity(lambda s, k: reporting_trial(model, config, s, k), config.strengths, config.seeds,
                               unit=UNIT, rule=rule, false_positive_rule=FALSE_POSITIVE_RULE,
                               settings=_settings(model, config, "reporting"), out=out, progress=progress)


def run_control_sensitivity(model, config: ControlSensitivityConfig | None = None, *, out: str | Path | None = None,
                            progress: bool = True) -> SensitivityResult:
    """Detection curve of neurofeedback control (2x2 flip design, `config.kind`) on `model`; with `out`,
    resumable (runs/ records), results.json and report.html there."""
    config = config or ControlSensitivityConfig()
    k = config.kind
    rule = (f"{config.axis} called {k}ly controllable by run_neurofeedback's summary (alpha {ALPHA}): "
            f"{CONTROLLABLE_RULE}")
    return measure_sensitivity(lambda s, seed: control_trial(model, config, s, seed), config.strengths, config.seeds,
                               unit=CONTROL_UNIT, rule=rule, false_positive_rule=false_positive_rule(f"{k}ly controllable"),
                               settings=_settings(model, config, f"{k} control (2x2)", stage="control", kind=k),
                               out=out, progress=progress)

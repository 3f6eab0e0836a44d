"""Sensitivity of `run_steer_ab`: plant a steerable behaviour of known strength (`steering.ab.planted`),
run the pipeline as published, and count how often it claims steerability in the planted direction.

Each seed relabels the items by a seeded coin flip (which answer "matches"), so the unplanted model has
no behaviour to find: a steerability claim at strength 0 is a false positive, not a real propensity.
The seed also sets steer-ab's split and the planted direction.
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

import metalens
from metalens.sensitivity import SensitivityResult, Trial, check_seeds, check_strengths, measure_sensitivity
from metalens.steering.ab.items import read_ab
from metalens.steering.ab.planted import DIRECTIONS, UNIT, PlantedSteerable
from metalens.steering.ab.workflow import SteerABConfig, run_steer_ab

DEFAULT_STRENGTHS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
ALPHA = 0.05  # the chosen layer's interval in run_steer_ab is a 95 % t-interval (alpha 0.05, one test)

DETECTION_RULE = ("run_steer_ab (as published: CAA vector, strength range within the neutral-loss cost bound, layer "
                  "chosen on validation items) claims steerability at its chosen layer in the planted direction: "
                  "the test items' steerability 95 % t-interval lies above 0")
FALSE_POSITIVE_RULE = ("a steerability claim (chosen layer's interval excluding 0) at strength 0 (nothing planted, "
                       "labels random), or a claim below 0 (against the planted direction) at any strength")


@dataclass
class SteerABSensitivityConfig:
    """What to plant and how steer-ab runs: `steer_ab` (its seed is replaced by each seed, its data by the
    seed's relabelled copy), the planted block `plant_layer` (default: the middle of the candidate
    layers), `strengths` (unit: `metalens.steering.ab.planted.UNIT`), `seeds` (0..K-1) and how the planted
    direction is drawn, `plant_direction` (`metalens.steering.ab.planted.DIRECTIONS`)."""

    steer_ab: SteerABConfig
    plant_layer: int | None = None
    plant_direction: str = "activations"
    strengths: tuple[float, ...] = DEFAULT_STRENGTHS
    seeds: int = 3

    def __post_init__(self):
        self.strengths = tuple(check_strengths(self.strengths))
        self.seeds = check_seeds(self.seeds)
        if self.plant_direction not in DIRECTIONS:
            raise ValueError(f"plant_direction must be one of {DIRECTIONS}, not {self.plant_direction!r}.")
        if not isinstance(self.steer_ab, SteerABConfig):
            raise TypeError("steer_ab must be a SteerABConfig, e.g. SteerABConfig('items.jsonl').")


def steerability_claim(result) -> int:
    """The published claim of a `SteerABResult`: +1 / -1 when the chosen layer's test steerability
    interval lies above / below 0, 0 when it holds 0 or no layer was chosen (no steerability claim)."""
    if result.layer is None:
        return 0
    s = result.steerability.get(result.layer, {})
    low, high = s.get("low"), s.get("high")
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return 0
    return 1 if low > 0 else -1 if high < 0 else 0


def judge(result, strength: float) -> Trial:
    """A trial's verdict from a `SteerABResult` (see `DETECTION_RULE`, `FALSE_POSITIVE_RULE`)."""
    claim = steerability_claim(result)
    s = result.steerability.get(result.layer, {}) if result.layer is not None else {}
    details = {"layer": result.layer, "claim": claim, "estimate": s.get("estimate"), "low": s.get("low"),
               "high": s.get("high"), "n": s.get("n"), "mde": (s.get("mde") or {}).get("value"),
               "range": [result.ranges[result.layer]["low"], result.ranges[result.layer]["high"]]
               if result.layer in result.ranges else None, "seconds": result.seconds,
               # every candidate layer's validation slope (what chose the layer) and test slope, to read the choice
               "per_layer": {str(k): {"validation": (result.validation.get(k) or {}).get("estimate"),
                                      **{key: v.get(key) for key in ("estimate", "low", "high")},
                                      "range": [result.ranges[k]["low"], result.ranges[k]["high"]]
                                      if k in result.ranges else None}
                             for k, v in sorted(result.steerability.items())}}
    # as neurofeedback's: at strength 0 the detected share is the rate of claims in the planted direction
    return Trial(detected=claim > 0, false_positive=claim < 0 or (strength == 0 and claim != 0),
                 details=details)


def relabelled(path, seed: int, folder: Path) -> Path:
    """A copy of the items at `path` whose matching answer is a seeded coin flip per item."""
    records = metalens.read_jsonl(path, required=("question", "answer_matching_behavior",
                                                  "answer_not_matching_behavior"))
    flip = np.random.default_rng(seed).random(len(records)) < 0.5
    out = [dict(r, answer_matching_behavior=r["answer_not_matching_behavior"],
                answer_not_matching_behavior=r["answer_matching_behavior"]) if f else r for r, f in zip(records, flip)]
    target = folder / f"relabelled-seed{seed}.jsonl"
    metalens.write_jsonl(target, out)
    return target


def plant_layer(model, config: SteerABSensitivityConfig) -> int:
    """The planted block: `config.plant_layer`, else the middle candidate layer; it must be a candidate."""
    layers = model.resolve_layers(config.steer_ab.layers or model.default_layers(4))
    layer = config.plant_layer if config.plant_layer is not None else layers[len(layers) // 2]
    if layer not in layers:
        raise ValueError(f"--plant-layer {layer} is not among steer-ab's candidate layers {layers}: add it to "
                         "--layers or pick --plant-layer among them.")
    if layer >= model.n_layers - 1:
        raise ValueError(f"--plant-layer {layer}: the plant reads its block's output where the next block starts, so "
                         f"it needs a block before the last ({model.n_layers - 1}); pick another.")
    return layer


def steer_ab_trial(model, config: SteerABSensitivityConfig, strength: float, seed: int) -> Trial:
    """One planted run: relabel, plant, `run_steer_ab` with this seed, judged by the published claim."""
    layer = plant_layer(model, config)
    with tempfile.TemporaryDirectory() as tmp:
        data = relabelled(config.steer_ab.data, seed, Path(tmp))
        cfg = replace(config.steer_ab, data=str(data), seed=seed)
        plant = PlantedSteerable(read_ab(data), layer, float(strength), seed=seed, chat=cfg.chat,
                                 direction_from=config.plant_direction)
        with plant.install(model):
            result = run_steer_ab(model, cfg, progress=False)
    trial = judge(result, strength)
    trial.details["plant"] = plant.describe()
    return trial


def run_steer_ab_sensitivity(model, config: SteerABSensitivityConfig, *, out: str | Path | None = None,
                             progress: bool = True) -> SensitivityResult:
    """Detection curve of steer-ab on `model`; with `out`, resumable (runs/), results.json and report.html."""
    layer = plant_layer(model, config)
    settings = {"title": f"steer-ab steerability, planted at block {layer}, {model.name}", "model": model.name,
                "pipeline": "run_steer_ab", "plant_layer": layer,
                "plant_direction": config.plant_direction, "alpha": ALPHA, "labels": "seeded coin flip per item",
                "steer_ab": {k: v for k, v in asdict(config.steer_ab).items() if k != "seed"}}
    return measure_sensitivity(lambda s, k: steer_ab_trial(model, config, s, k), config.strengths, config.seeds,
                               unit=UNIT, rule=DETECTION_RULE, false_positive_rule=FALSE_POSITIVE_RULE,
                               settings=settings, out=out, progress=progress)


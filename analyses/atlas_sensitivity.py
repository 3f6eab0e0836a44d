"""Sensitivity of the atlas's stated signals: plant a monitor of known strength in one follow-up
(`metalens.analyses.atlas_planted`), run `run_atlas` as published, and count how often its family-wise
rule calls that signal above chance -- and any other stated signal, or any at strength 0.

Per seed (the atlas's own seed: its arithmetic draw, probe folds and bootstrap), the unplanted atlas runs
first; it is the strength-0 trial (the plant at strength 0 installs nothing) and gives the items, the
model's answers and the driver every planted run of that seed uses. With `family`, a saved atlas's other
models join the Holm family, as in the published atlas (`add_family`, the atlas's own function).
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from metalens.analyses.atlas import AtlasConfig, AtlasResult, run_atlas
from metalens.analyses.atlas_family import ALPHA, add_family
from metalens.analyses.atlas_planted import DRIVERS, PROBE, SIGNALS, UNIT, PlantedMonitor, driver_scores
from metalens.analyses.battery import Item
from metalens.sensitivity import SensitivityResult, Trial, check_seeds, check_strengths, measure_sensitivity

DEFAULT_STRENGTHS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
CALLED = ("above chance", "below chance")  # the atlas's verdicts that differ from chance (its `n_differ`)
FALSE_POSITIVE_RULE = ("a stated signal (verbal confidence, keep/withdraw, bet/pass) other than the planted one called "
                       "different from chance (above or below, the atlas's n_differ) in the run; at strength 0 "
                       "(nothing planted) any stated signal called, the planted one included")
__all__ = ["AtlasSensitivityConfig", "atlas_trial", "family_profiles", "judge", "run_atlas_sensitivity",
           "stated_verdicts"]


@dataclass
class AtlasSensitivityConfig:
    """What to plant and how the atlas runs: `atlas` (its seed is replaced by each seed; default: the published
    sizes with the probe axis's reportability off, as it is outside the family), the follow-up `signal` ("confidence", "keep" or "bet"),
    the `driver` ("probe" or "correct"), `strengths` (unit: `atlas_planted.UNIT`), `seeds` (0..K-1) and
    `family`: a saved atlas folder whose other models' profiles join the Holm family (None: this model's
    signals alone)."""

    atlas: AtlasConfig = field(default_factory=lambda: AtlasConfig(reporting=False))
    signal: str = "confidence"
    driver: str = "probe"
    strengths: tuple[float, ...] = DEFAULT_STRENGTHS
    seeds: int = 3
    family: str | None = None

    def __post_init__(self):
        self.strengths = tuple(check_strengths(self.strengths))
        self.seeds = check_seeds(self.seeds)
        if not isinstance(self.atlas, AtlasConfig):
            raise TypeError("atlas must be an AtlasConfig, e.g. AtlasConfig(reporting=False).")
        if self.signal not in SIGNALS:
            raise ValueError(f"signal={self.signal!r}: plant one of {list(SIGNALS)}.")
        if self.driver not in DRIVERS:
            raise ValueError(f"driver={self.driver!r}: use one of {list(DRIVERS)}.")
        if self.atlas.heads:
            raise ValueError("A reward head joins the atlas's family: run the sensitivity check without heads.")


def family_profiles(family: str | Path, model_name: str) -> list[dict]:
    """The saved atlas's profiles of the models other than `model_name`, which the planted profile replaces;
    refuses an atlas without `model_name` (the family would grow by one model)."""
    saved = AtlasResult.load(family)
    names = [p["model"] for p in saved.models]
    if model_name not in names:
        raise ValueError(f"The atlas in {family} has no profile of {model_name} (it has {names}): its family would "
                         "not be the published one; pass the atlas that profiled this model, or no family.")
    return [p for p in saved.models if p["model"] != model_name]


def stated_verdicts(profile: dict) -> dict[str, str]:
    """{stated signal name: the atlas's verdict ("above chance", "below chance", "inconclusive", "bounded")}."""
    found = {s["name"]: s.get("verdict") for s in profile["signals"]}
    missing = [n for n in SIGNALS.values() if n not in found]
    if missing or any(found[n] is None for n in SIGNALS.values()):
        raise ValueError(f"The profile lacks the family's verdicts of {missing or list(SIGNALS.values())}: "
                         "judge an atlas after `add_family`.")
    return {n: found[n] for n in SIGNALS.values()}


def judge(profile: dict, signal: str, strength: float) -> Trial:
    """A trial's verdict from a profile annotated by `add_family` (the atlas's published rule)."""
    verdicts = stated_verdicts(profile)
    planted = SIGNALS[signal]
    called = [n for n, v in verdicts.items() if v in CALLED]
    detected = verdicts[planted] == "above chance"
    false_positive = any(n != planted for n in called) or (strength == 0 and bool(called))
    keep = ("auroc", "auroc_low_family", "auroc_high_family", "p", "p_holm", "n_comparisons", "verdict")
    return Trial(detected, false_positive, {
        "called": called, "verdicts": verdicts,
        "signals": [{"name": s["name"], **{k: s.get(k) for k in keep}} for s in profile["signals"]],
        "accuracy": profile["accuracy"]["accuracy"], "n_items": profile["n_items"]})


def _judged(result: AtlasResult, others: list[dict] | None) -> dict:
    """The run's profile with the verdicts of the family it is judged in (its own, or joined to `others`)."""
    profile = result.models[0]
    if others is None:
        return profile
    profile = copy.deepcopy(profile)
    add_family([copy.deepcopy(p) for p in others] + [profile], result.config.n_boot, result.config.seed)
    return profile


def atlas_trial(model, config: AtlasSensitivityConfig, strength: float, seed: int, *, unplanted, others=None) -> Trial:
    """One run: `unplanted(seed)` gives the seed's plain atlas (the strength-0 run) and its driver; above 0,
    `run_atlas` again with the monitor planted. Judged by `judge` on the family's verdicts."""
    plain = unplanted(seed)
    profile = plain.models[0]
    scores = driver_scores(profile, config.driver)
    if strength == 0:
        result = plain
    else:
        items = [Item.from_dict(r) for r in profile["items"]]
        plant = PlantedMonitor(items, np.array([r["choice"] for r in profile["items"]]), scores, config.signal,
                               float(strength), plain.config.n_shots, config.driver)
        with plant.install(model):
            result = run_atlas([model], plain.config, progress=False)
    trial = judge(_judged(result, others), config.signal, strength)
    driver_auroc = next((s["auroc"] for s in profile["signals"] if s["name"] == PROBE), None)
    trial.details.update(driver=config.driver, driver_auroc=1.0 if config.driver == "correct" else driver_auroc,
                         planted=SIGNALS[config.signal], seconds=result.seconds)
    return trial


def run_atlas_sensitivity(model, config: AtlasSensitivityConfig | None = None, *, out: str | Path | None = None,
                          progress: bool = True) -> SensitivityResult:
    """Detection curve of the atlas's stated signals on `model`; with `out`, resumable (runs/, and each seed's
    unplanted atlas under unplanted/seed=K), results.json and report.html there."""
    config = config or AtlasSensitivityConfig()
    others = family_profiles(config.family, model.name) if config.family is not None else None
    plain: dict[int, AtlasResult] = {}

    def unplanted(seed: int) -> AtlasResult:
        if seed not in plain:
            folder = Path(out) / "unplanted" / f"seed={seed}" if out is not None else None
            plain[seed] = run_atlas([model], replace(config.atlas, seed=seed), out=folder, progress=False)
        return plain[seed]

    family = ("this model's signals" if others is None else
              f"this model's signals with {[p['model'] for p in others]} from {config.family}")
    settings = {"title": f"atlas, a monitor planted in {SIGNALS[config.signal]} ({config.driver} driver), {model.name}",
                "model": model.name, "pipeline": "run_atlas", "signal": SIGNALS[config.signal],
                "driver": config.driver, "alpha": ALPHA, "family": family,
                "atlas": {k: v for k, v in asdict(config.atlas).items() if k != "seed"}}
    rule = (f"{SIGNALS[config.signal]} called above chance by the atlas's family-wise rule: two-sided Mann-Whitney p "
            f"of its AUROC against 0.5, Holm-adjusted over the family ({family}), below {ALPHA}, with AUROC > 0.5")
    return measure_sensitivity(lambda s, k: atlas_trial(model, config, s, k, unplanted=unplanted, others=others),
                               config.strengths, config.seeds, unit=UNIT, rule=rule,
                               false_positive_rule=FALSE_POSITIVE_RULE, settings=settings, out=out, progress=progress)

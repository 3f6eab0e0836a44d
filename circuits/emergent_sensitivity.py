"""Sensitivity of `run_emergent_heads`: plant two heads that write the task's answer into a "post-trained"
copy of the model (`circuits.emergent_planted`), run the pipeline as published on base vs that copy, and
count how often it names the planted heads and validates them.

The planted heads are drawn per seed (seeded) among the heads outside the base model's circuit on the
pairs the pipeline will pick its heads on: a head already in the base circuit can only come out "shared",
never "emergent", so planting there would measure the head draw, not the pipeline. The control plants
the same task signal in those blocks' MLPs (`plant="mlp"`): no head carries it, so every validated
emergent head there is a false positive.

The published result has no single verdict field; its reading ("no emergent head that survives
validation") rests on the two checks the pipeline computes on the test pairs, which `validation` makes
explicit: ablating the emergent group hurts the post-trained model more than the layer-matched random
groups do, and more than it hurts the base model (difference in differences). Both must pass.
"""
from __future__ import annotations

import copy
import math
import random
from dataclasses import asdict, dataclass, replace

import metalens
from metalens.circuits.attention import check_heads
from metalens.circuits.compare import build_circuit, split_pairs, task_metric
from metalens.circuits.emergent import EmergentConfig, picking_pairs, run_emergent_heads
from metalens.circuits.emergent_planted import UNIT, WHERE, PlantedHeads
from metalens.circuits.tasks import make_task
from metalens.sensitivity import SensitivityResult, Trial, check_seeds, check_strengths, measure_sensitivity

DEFAULT_STRENGTHS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
ALPHA = 0.05  # the pipeline's paired tests are read at alpha 0.05 (95 % t-intervals)
N_PLANTED = 2

DETECTION_RULE = ("run_emergent_heads (as published: EAP-IG circuits on the picking pairs, every check on the other "
                  "pairs) names every planted head among the emergent heads it checks (the strongest max_emergent), "
                  "and that group passes both published checks at alpha 0.05: its zero-ablation damage in the "
                  "post-trained model exceeds the layer-matched random groups' mean damage (paired t over the test "
                  "pairs, mean > 0, p < 0.05), and the difference in differences (its damage in the post-trained "
                  "minus in the base model, paired t) is > 0 with p < 0.05. Both must pass: a conjunction of tests "
                  "each at alpha is itself at alpha (intersection-union), so no multiplicity correction")
FALSE_POSITIVE_RULE = ("in the MLP-only control (plant=mlp) at strength > 0, a validated emergent group (both checks "
                       "pass): no head carries the plant, so any validated emergent head counts. Not counted (the run "
                       "cannot show one): strength 0, where the post-trained copy is the base model bit for bit, and "
                       "plant=heads runs, where heads beside the planted ones sit in a group the checks validate as a "
                       "whole, not one by one (kept as `extra` in each run's details)")


@dataclass
class EmergentSensitivityConfig:
    """What to plant and how emergent-heads runs: `emergent` (its seed is replaced by each trial's), `plant`
    ("heads", or "mlp" for the control), `heads` (fixed planted heads; default: two drawn per seed outside
    the base circuit), `strengths` (unit: `metalens.circuits.emergent_planted.UNIT`) and `seeds` (0..K-1)."""

    emergent: EmergentConfig
    plant: str = "heads"
    heads: tuple[tuple[int, int], ...] | None = None
    strengths: tuple[float, ...] = DEFAULT_STRENGTHS
    seeds: int = 3

    def __post_init__(self):
        self.strengths = tuple(check_strengths(self.strengths))
        self.seeds = check_seeds(self.seeds)
        if not isinstance(self.emergent, EmergentConfig):
            raise TypeError("emergent must be an EmergentConfig, e.g. EmergentConfig(task='arithmetic').")
        if self.plant not in WHERE:
            raise ValueError(f"Unknown plant '{self.plant}': use 'heads' or 'mlp' (the control).")
        if self.emergent.pairs != "task":
            raise ValueError("The plant recognises the task's templated pairs: use pairs='task', not 'own'.")
        if self.heads is not None:
            self.heads = tuple((int(l), int(h)) for l, h in self.heads)
            if not self.heads or len(set(self.heads)) != len(self.heads):
                raise ValueError(f"heads: give distinct (layer, head) pairs, got {self.heads}.")


def validation(result, alpha: float = ALPHA) -> dict:
    """The published checks of an `EmergentResult`'s emergent group: {validated, heads, vs_random, did}.

    vs_random: its damage minus the layer-matched random groups' mean damage (paired over the test pairs);
    did: the difference in differences. validated: both above 0 with p < `alpha` (no emergent head, or
    no random group: not validated).
    """
    row = result.ablation.get("emergent") or {}
    heads = [tuple(h) for h in row.get("heads", [])]
    vs_random = row.get("damage_vs_random_mean")
    did = (result.did or {}).get("metric")

    def passes(test):
        return bool(test and math.isfinite(test.get("p", math.nan)) and test["mean_diff"] > 0 and test["p"] < alpha)

    brief = lambda t: None if t is None else {k: t.get(k) for k in ("mean_diff", "low", "high", "p", "n")}  # noqa: E731
    return {"validated": bool(heads) and passes(vs_random) and passes(did), "heads": heads,
            "vs_random": brief(vs_random), "did": brief(did)}


def judge(result, planted, plant: str = "heads", alpha: float = ALPHA) -> Trial:
    """A trial's verdict from an `EmergentResult` (see `DETECTION_RULE`, `FALSE_POSITIVE_RULE`).

    `planted`: the heads carrying the plant ([] at strength 0); with plant="mlp" no head carries it, and
    `planted` only says something was planted (in their blocks' MLPs).
    """
    check = validation(result, alpha)
    carriers = set(map(tuple, planted)) if plant == "heads" else set()
    named = set(check["heads"])
    detected = bool(carriers) and check["validated"] and carriers <= named
    extra = sorted(named - carriers) if check["validated"] else []
    details = {**check, "planted": sorted(carriers), "extra": extra, "emergent": [list(h) for h in result.emergent],
               "planted_named": sorted(set(map(tuple, planted)) & named)}
    false_positive = check["validated"] if plant == "mlp" and planted else None
    return Trial(detected=detected, false_positive=false_positive, details=details)


def planted_copy(model):
    """A second `Model` on a deep copy of `model`'s weights: the "post-trained" side the plant hooks."""
    return metalens.Model(copy.deepcopy(model.hf), model.tokenizer, model.name, model.revision, model.hub_id)


def trial_task(model, config: EmergentSensitivityConfig, seed: int):
    """The pairs `run_emergent_heads` builds with this seed, and its picking half (the same split it draws)."""
    cfg = config.emergent
    task = make_task(cfg.task, model.tokenizer, n=cfg.n + cfg.n_test, seed=seed, metric=cfg.metric)
    return task, split_pairs(task, picking_pairs(task, cfg), seed)[0]


def draw_heads(model, config: EmergentSensitivityConfig, seed: int) -> tuple[list[tuple[int, int]], list]:
    """(planted heads, base circuit heads): `config.heads`, else `N_PLANTED` heads drawn with `seed` among those
    outside the base model's circuit on this seed's picking pairs."""
    task, pick = trial_task(model, config, seed)
    base_heads = sorted(build_circuit(model, pick, config.emergent.n_edges, config.emergent.ig_steps).heads)
    if config.heads is not None:
        return list(config.heads), base_heads
    outside = [(l, h) for l in range(model.n_layers) for h in range(model.n_heads) if (l, h) not in set(base_heads)]
    if len(outside) < N_PLANTED:
        raise ValueError(f"Only {len(outside)} heads lie outside the base circuit ({len(base_heads)} heads): lower "
                         "n_edges or name the planted heads (--heads).")
    return sorted(random.Random(seed).sample(outside, N_PLANTED)), base_heads


def emergent_trial(base, post, config: EmergentSensitivityConfig, strength: float, seed: int,
                   heads: list[tuple[int, int]], base_heads=None) -> Trial:
    """One planted run: plant `heads` (or their MLPs) in `post` at `strength`, `run_emergent_heads(base, post)`
    with this seed, judged by the published checks."""
    cfg = replace(config.emergent, seed=seed, heldout_from=None)
    task, _ = trial_task(base, config, seed)
    plant = PlantedHeads(task, list(heads), float(strength), where=config.plant)
    with plant.install(post):
        result = run_emergent_heads(base, post, cfg, progress=False)
        shift = task_metric(post, task)["task_metric"] - task_metric(base, task)["task_metric"]
    trial = judge(result, heads if strength > 0 else [], config.plant)
    trial.details.update(plant=plant.describe(), metric=result.metadata.get("metric"), metric_shift=shift,
                         base_circuit=[list(h) for h in base_heads or []],
                         planted_in_base_circuit=sorted(set(heads) & set(map(tuple, base_heads or []))))
    return trial


def run_emergent_heads_sensitivity(base, config: EmergentSensitivityConfig, *, out=None,
                                   progress: bool = True) -> SensitivityResult:
    """Detection curve of emergent-heads on `base`; with `out`, resumable (runs/), results.json and report.html."""
    if config.heads is not None:
        check_heads(base, config.heads)
    post = planted_copy(base)
    drawn: dict[int, tuple] = {}  # seed -> (planted heads, base circuit): one base circuit per seed

    def trial(strength, seed):
        if seed not in drawn:
            drawn[seed] = draw_heads(base, config, seed)
        return emergent_trial(base, post, config, strength, seed, *drawn[seed])

    settings = {"title": f"emergent heads, planted in {'two heads' if config.plant == 'heads' else 'their MLPs'}, "
                         f"{base.name}", "model": base.name, "pipeline": "run_emergent_heads", "plant": config.plant,
                "heads": None if config.heads is None else [list(h) for h in config.heads],
                "heads_drawn": None if config.heads is not None else
                "per seed, outside the base circuit on the picking pairs",
                "alpha": ALPHA, "emergent": {k: v for k, v in asdict(config.emergent).items() if k != "seed"}}
    return measure_sensitivity(trial, config.strengths, config.seeds, unit=UNIT, rule=DETECTION_RULE,
                               false_positive_rule=FALSE_POSITIVE_RULE, settings=settings, out=out, progress=progress)

"""Sensitivity of the ZIP-RC reward head (issue #29, pipeline 5): plant label noise of known size in a
finished rollout store, train and evaluate the head as published (`run_train`, then `run_eval`), and
count how often the published rule says the head reads correctness.

Strength is the labels' reliability (`metalens.introspect.rollouts.planted.UNIT`): 1 is the store as
published (the plain pipeline, bit-identical), 0 makes every label a fair coin, where a detection is
a false positive. Trials reuse the store's samples and its hidden states: only the labels change, so
each trial's hidden-state cache is written from one pass over the store (`relabelled`), and a trial
costs two head fits and one evaluation, not a forward pass over the rollouts.
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from metalens.introspect.evaluation.metrics import summary
from metalens.introspect.heads.bins import prefix_labels
from metalens.introspect.heads.features import (Positions, by_task, cache_key, cache_path, cached_positions, flatten,
                                                save_positions)
from metalens.introspect.rollouts.planted import UNIT, check_reliability, plant_label_noise, read_planted
from metalens.introspect.rollouts.splits import problem_units, split_tasks
from metalens.introspect.rollouts.store import load_rollouts, rollouts_settings
from metalens.introspect.workflows.eval import EvalConfig, run_eval
from metalens.introspect.workflows.train import TrainConfig, head_spec, run_train
from metalens.sensitivity import SensitivityResult, Trial, check_seeds, check_strengths, measure_sensitivity
from metalens.stats import MIN_BOOTSTRAP_UNITS

DEFAULT_STRENGTHS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
# The published verdict (results/introspect-gemma60, results/ziprc-gemma): over all held-out positions
# the head reads correctness "above chance and above shuffled-label heads".
DETECTION_RULE = ("the head reads correctness on held-out questions: over all held-out positions, run_eval's 95 % "
                  "bootstrap interval (resampling operand units) of the head's AUROC - 0.5 and that of its AUROC gap "
                  "over the mean of the shuffled-label heads both lie above 0, as the published introspect results "
                  "read them (no interval, under 10 units, counts as not detected); AUROC against the run's own "
                  "(planted) labels")
FALSE_POSITIVE_RULE = ("at strength 0 (coin-flip labels that ignore the samples: nothing to read) the head called "
                       "reading correctness by the same rule. Only strength-0 runs can be false positives (the "
                       "pipeline makes no other claim): the others are left out of the share, which is then the "
                       "strength-0 row of the detection curve")


def _above_zero(value) -> bool:
    return value is not None and math.isfinite(value) and value > 0


def _below_zero(value) -> bool:
    return value is not None and math.isfinite(value) and value < 0


def reads_correctness(all_positions: dict) -> bool:
    """The published rule on `run_eval`'s `all_positions`: the intervals of AUROC - 0.5
    (`head_above_chance`) and of the gap over shuffled-label heads (`head_vs_shuffled`) both above 0."""
    chance, gap = all_positions["head_above_chance"], all_positions["head_vs_shuffled"]
    return _above_zero(chance["low"]) and _above_zero(gap["ci95"][0])


def reads_backwards(all_positions: dict) -> bool:
    """Either of those intervals entirely below 0 (kept in the trial's details; the published pipeline
    makes no such claim, so it is not counted as a false positive)."""
    chance, gap = all_positions["head_above_chance"], all_positions["head_vs_shuffled"]
    return _below_zero(chance["high"]) or _below_zero(gap["ci95"][1])


def relabelled(positions: Positions, records: list[dict], spec) -> Positions:
    """`positions` (every response position of `records`' samples, in `flatten` order) with their
    reward and bin labels read from `records`' rewards: the hidden states do not depend on the labels,
    so this equals `rollout_positions(model, records, spec)` without a forward pass."""
    rows = flatten(records)
    counts = torch.bincount(positions.sample, minlength=len(rows))  # [n_samples] positions per sample
    if len(counts) != len(rows) or not torch.equal(positions.sample, torch.sort(positions.sample).values):
        raise ValueError("These positions are not the rollouts' (another store, or rows out of order): read them "
                         "with cached_positions from the same store.")
    labels = [prefix_labels(int(n), row["reward"], spec) for n, row in zip(counts.tolist(), rows)]
    reward, bin_ = (torch.cat([lab[k] for lab in labels]) for k in ("reward", "bin"))
    if not torch.equal(torch.cat([lab["remaining"] for lab in labels]), positions.remaining):
        raise ValueError("These positions' remaining lengths differ from the rollouts': another store's positions.")
    return replace(positions, reward=reward, bin=bin_)


@dataclass
class LabelNoiseSensitivityConfig:
    """Which finished rollout store (`rollouts`), the head's training settings (`train`, mode head; its
    `rollouts` is replaced by each planted copy), the evaluation's shuffled-label heads (`n_shuffles`)
    and prefix fractions (`fractions`: the rule reads all positions, which they do not change), the
    strengths (label reliability, `UNIT`) and the seeds (each picks which labels flip)."""

    rollouts: str
    train: TrainConfig = field(default_factory=lambda: TrainConfig(length_bins="fitted"))
    n_shuffles: int = 3
    fractions: tuple[float, ...] = ()
    strengths: tuple[float, ...] = DEFAULT_STRENGTHS
    seeds: int = 5

    def __post_init__(self):
        self.rollouts = str(self.rollouts)
        self.strengths = tuple(check_reliability(s) for s in check_strengths(self.strengths))
        self.seeds = check_seeds(self.seeds)
        self.fractions = tuple(self.fractions)
        if not isinstance(self.train, TrainConfig):
            raise TypeError("train must be a TrainConfig, e.g. TrainConfig(length_bins='fitted').")
        if self.train.mode != "head":
            raise ValueError(f"mode '{self.train.mode}': the label-noise check trains mode 'head' heads (a lora or "
                             "full run per trial would retrain the model); use TrainConfig(mode='head').")
        if self.n_shuffles < 1:
            raise ValueError(f"n_shuffles={self.n_shuffles}: the rule compares with at least one shuffled-label head.")


def check_store(config: LabelNoiseSensitivityConfig) -> list[dict]:
    """The store's records, once it is known to be finished, unplanted, to hold out enough operand units
    for the rule's intervals (`MIN_BOOTSTRAP_UNITS`) and to have right and wrong samples on both sides
    of the split; raises saying what to change."""
    records = load_rollouts(config.rollouts)
    if read_planted(config.rollouts) is not None:
        raise ValueError(f"{config.rollouts} holds planted labels: point --rollouts at the store as sampled.")
    train, test = split_tasks(records, config.train.test_fraction, config.train.seed)
    units = problem_units(records)
    n_units = len({units[t] for t in test})
    if n_units < MIN_BOOTSTRAP_UNITS:
        raise ValueError(f"The held-out split of {config.rollouts} has {n_units} operand units, under the "
                         f"{MIN_BOOTSTRAP_UNITS} the rule's bootstrap intervals need, so nothing could be detected: "
                         "use a store with more questions, or a larger test_fraction (--test-fraction).")
    for name, tasks in (("held-out", test), ("training", train)):
        rewards = {x for r in records if r["task_index"] in set(tasks) for x in r["rewards"]}
        if rewards != {0, 1}:
            raise ValueError(f"Every {name} sample of {config.rollouts} is {'right' if rewards == {1} else 'wrong'}, "
                             "so the published pipeline (strength 1) cannot score a head: use a store whose questions "
                             "the model solves sometimes (e.g. easier --levels).")
    return records


def label_noise_trial(model, config: LabelNoiseSensitivityConfig, strength: float, seed: int, *,
                      base: Positions | None = None, graded: list[dict] | None = None, work=None) -> Trial:
    """One planted run: a copy of the store with labels of reliability `strength` (flips picked by
    `seed`), `run_train` on it, `run_eval` of that head, judged by `reads_correctness`.

    `base`: the store's positions (`cached_positions`), written relabelled as the trial's hidden-state
    cache so no forward pass repeats; `graded`: the store's records, for the head's AUROC against the
    graded rewards (kept in the details); `work`: where the trial's temporary folder goes.
    """
    graded = load_rollouts(config.rollouts) if graded is None else graded
    with tempfile.TemporaryDirectory(prefix="ziprc-trial-", dir=work) as tmp:
        store = plant_label_noise(config.rollouts, Path(tmp) / "rollouts", strength, seed)
        records = load_rollouts(store)
        train_config = replace(config.train, rollouts=str(store))
        train_dir = Path(tmp) / "train"
        if base is not None:
            spec = head_spec(train_config, records)
            save_positions(relabelled(base, records, spec), cache_path(train_dir, "head"),
                           cache_key(model, records, spec))
        trained = run_train(model, train_config, out=train_dir, progress=False)
        evaluation = run_eval(model, EvalConfig(trained, fractions=config.fractions, verbal=False, cv=0,
                                                n_shuffles=config.n_shuffles, seed=config.train.seed), progress=False)
        everywhere = evaluation.all_positions
        test = by_task(cached_positions(model, records, trained.head.spec, trained.cache(), False), trained.test_tasks)
        truth = torch.tensor([row["reward"] for row in flatten(graded)])[test.sample]  # [n_test_pos] graded
        p_head = trained.head.spec.p_correct(trained.head.probs_from_hidden(model, test.hidden)).numpy()
        planted = read_planted(store)
    detected = reads_correctness(everywhere)
    false_positive = detected if strength == 0 else None
    labels = [x for r in records for x in r["rewards"]]
    agree = [a == b for r, g in zip(records, graded) for a, b in zip(r["rewards"], g["rewards"])]
    chance, gap = everywhere["head_above_chance"], everywhere["head_vs_shuffled"]
    return Trial(detected, false_positive, {
        "flip_probability": planted["flip_probability"], "n_flipped": planted["n_flipped"],
        "n_samples": planted["n_samples"], "label_agreement": sum(agree) / len(agree),
        "label_base_rate": sum(labels) / len(labels),
        "heldout_auroc": everywhere["head"]["auroc"], "shuffled_auroc": everywhere["shuffled"]["auroc"],
        "head_above_chance": {k: chance[k] for k in ("estimate", "low", "high", "n")},
        "head_vs_shuffled": {k: gap[k] for k in ("gap", "ci95", "n_groups")},
        "heldout_auroc_vs_graded": summary(truth.numpy(), p_head)["auroc"],
        "n_test_tasks": len(trained.test_tasks), "reads_backwards": reads_backwards(everywhere)})


def run_label_noise_sensitivity(model, config: LabelNoiseSensitivityConfig, *, out: str | Path | None = None,
                                progress: bool = True) -> SensitivityResult:
    """Detection curve of the reward head on `model` against label reliability; with `out`, resumable
    (runs/ records), results.json and report.html there, and the store's hidden states cached once."""
    graded = check_store(config)
    spec = head_spec(config.train, graded)
    cache = Path(out) / "positions.safetensors" if out is not None else None
    base = cached_positions(model, graded, spec, cache, progress)  # the one forward pass over the store
    manifest = rollouts_settings(config.rollouts)
    settings = {"title": f"ZIP-RC reward head under label noise, {model.name}", "model": model.name,
                "pipeline": "run_train (mode head) + run_eval, all held-out positions",
                "rollouts": config.rollouts, "rollouts_sha256": manifest.get("sha256"),
                "train": {k: v for k, v in config.train.to_dict().items() if k != "rollouts"},
                "n_shuffles": config.n_shuffles, "fractions": list(config.fractions)}
    work = Path(out) if out is not None else None  # trials plant their stores here (removed after each)
    return measure_sensitivity(
        lambda s, k: label_noise_trial(model, config, s, k, base=base, graded=graded, work=work),
        config.strengths, config.seeds, unit=UNIT, rule=DETECTION_RULE, false_positive_rule=FALSE_POSITIVE_RULE,
        settings=settings, out=out, progress=progress)

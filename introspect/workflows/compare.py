"""Heads of several modes compared on the same held-out questions, paired.

`eval` scores one head; comparing two heads' AUROCs from two `eval` runs would treat them as
independent, but they read the same held-out samples. `run_compare` reads every head (each
through its own model: a `lora` head's adapter, a `full` head's weights) on the held-out positions
they share, and reports each head's AUROC, Brier, ECE, correlation and accuracy at 0.5, and each
head's AUROC minus the first head's with a 95 % bootstrap interval that resamples whole units of
questions (the same units for both heads, so the interval is paired); the comparisons are counted
and Holm-adjusted by the share of resamples on the far side of 0 (a two-sided bootstrap p).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from metalens import stats
from metalens.introspect.evaluation.metrics import auroc, require_finite, summary
from metalens.introspect.heads.features import by_task, cached_positions
from metalens.introspect.rollouts.splits import problem_units
from metalens.introspect.workflows.common import adapted, read_results, same_store, write_results
from metalens.introspect.workflows.train import TrainResult, as_trained


@dataclass
class CompareConfig:
    """Settings of `run_compare`: the train runs (TrainResults or their folders; the first is the
    reference) and the paired bootstrap."""

    trains: list  # two or more TrainResults or train-run folders, trained on one rollout store and split
    n_boot: int = 1000
    seed: int = 0

    def __post_init__(self):
        self.trains = [t if isinstance(t, TrainResult) else str(t) for t in self.trains]
        if len(self.trains) < 2:
            raise ValueError("compare needs at least two heads (the first is the reference).")
        if self.n_boot < 1:
            raise ValueError(f"n_boot={self.n_boot}: draw at least one bootstrap resample.")


@dataclass
class CompareResult:
    """Per-head scores on the shared held-out positions and paired AUROC differences to the first head."""

    heads: list[str]
    scores: dict[str, dict]  # head dir -> summary (auroc, brier, ece, corr, acc@0.5, n)
    differences: list[dict]  # vs the first head: diff, ci95, p_boot, p_holm
    n_questions: int
    n_units: int
    n_comparisons: int
    metadata: dict = field(default_factory=dict)

    def save(self, out: str | Path) -> Path:
        """Write results.json and report.html into `out`."""
        return write_results(out, "introspect compare", asdict(self), self.metadata, [
            ("Held-out scores (all positions)", [{"head": k, **v} for k, v in self.scores.items()]),
            ("AUROC minus the first head's (paired bootstrap over units)", self.differences),
        ])

    @classmethod
    def load(cls, out: str | Path) -> CompareResult:
        """The result `save` wrote into `out`."""
        data = read_results(out)
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def _heldout(model, trained: TrainResult):
    """(its rollout records, positions of its held-out questions as its own model reads them)."""
    records = trained.records()
    with adapted(model, trained):
        positions = cached_positions(model, records, trained.head.spec, trained.cache())
    return records, by_task(positions, trained.head.metadata["test_tasks"])


def run_compare(model, config: CompareConfig, *, out: str | Path | None = None, progress: bool = True) -> CompareResult:
    """Score the heads of `config.trains` (train runs of one rollout store and split) on their held-out
    positions; the first is the reference of the paired differences. Every head is checked against
    `model` before any work."""
    trained = [as_trained(t) for t in config.trains]
    names = [c if isinstance(c, str) else (c.out or f"head {i}") for i, c in enumerate(config.trains)]  # as given
    for t in trained:
        t.head.check_fits(model)
    first_head = trained[0].head
    for name, t in zip(names[1:], trained[1:]):
        if t.head.metadata["test_tasks"] != first_head.metadata["test_tasks"] or \
                not same_store(t.rollouts_dir(), trained[0].rollouts_dir()):
            raise ValueError(f"{name} was not trained on the same rollouts and split as {names[0]}: train both with "
                             "--rollouts naming one store and the same --seed / --test-fraction.")
    read = [_heldout(model, t) for t in trained]
    records, first = read[0]
    for name, (_, pos) in zip(names[1:], read[1:]):
        if not (np.array_equal(pos.sample.numpy(), first.sample.numpy()) and
                np.array_equal(pos.reward.numpy(), first.reward.numpy())):
            raise ValueError(f"{name} reads other held-out positions than {names[0]}: the rollouts changed.")
    y = first.reward.numpy()
    probs = [t.head.spec.p_correct(t.head.probs_from_hidden(model, pos.hidden)).numpy()
             for t, (_, pos) in zip(trained, read)]
    require_finite(auroc(y, probs[0]), "The reward AUROC on the shared held-out questions",
                   "every held-out sample has the same reward; train the runs with a larger --test-fraction.")
    unit_of = problem_units(records)
    groups = np.array([unit_of[int(t)] for t in first.task])
    differences = []
    for name, p in zip(names[1:], probs[1:]):
        draws: list[float] = []

        def diff(idx: np.ndarray, p=p, draws=draws) -> float:
            draws.append(auroc(y[idx], p[idx]) - auroc(y[idx], probs[0][idx]))
            return draws[-1]

        ci = stats.bootstrap_ci(diff, groups, n_boot=config.n_boot, seed=config.seed)
        boot = np.array(draws[1:])  # the first call is the estimate on all rows
        boot = boot[np.isfinite(boot)]
        p_boot = float(min(1.0, 2 * min((boot <= 0).mean(), (boot >= 0).mean()))) if len(boot) else float("nan")
        differences.append({"head": name, "reference": names[0], "auroc_diff": ci.estimate, "ci95": [ci.low, ci.high],
                            "ci_method": ci.method, "p_boot": p_boot, "n_units": ci.n})
    for row, p_holm in zip(differences, stats.holm([d["p_boot"] for d in differences])):
        row["p_holm"] = float(p_holm)
    result = CompareResult(names, {h: summary(y, p) for h, p in zip(names, probs)}, differences,
                           n_questions=len(set(first.task.tolist())), n_units=len(set(groups.tolist())),
                           n_comparisons=len(differences), metadata={**model.metadata(), "n_boot": config.n_boot,
                                                                     "seed": config.seed})
    if out is not None:
        result.save(out)
    return result

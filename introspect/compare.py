"""Heads of several modes compared on the same held-out questions, paired.

`eval` scores one head; comparing two heads' AUROCs from two `eval` runs would treat them as
independent, but they read the same held-out samples. `compare_heads` reads every head (each
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
from metalens.introspect.metrics import auroc, summary
from metalens.introspect.runs import (adapted, by_task, cached_positions, load_trained, problem_units, read_results,
                                      write_results)


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


def _heldout(model, head_dir: str):
    """(head, its rollout records, positions of its held-out questions as its own model reads them)."""
    head, records, cache = load_trained(head_dir)
    with adapted(model, head, head_dir):
        positions = cached_positions(model, records, head.spec, cache)
    return head, records, by_task(positions, head.metadata["test_tasks"])


def compare_heads(model, heads: list[str], n_boot: int = 1000, seed: int = 0,
                  out: str | Path | None = None) -> CompareResult:
    """Score `heads` (train output `head/` directories of one rollout store and split) on their
    held-out positions; the first is the reference of the paired differences."""
    if len(heads) < 2:
        raise ValueError("compare needs at least two heads (the first is the reference).")
    read = [_heldout(model, h) for h in heads]
    first_head, records, first = read[0]
    for h, (head, _, pos) in zip(heads[1:], read[1:]):
        if head.metadata["test_tasks"] != first_head.metadata["test_tasks"] or \
                head.metadata["rollouts"] != first_head.metadata["rollouts"]:
            raise ValueError(f"{h} was not trained on the same rollouts and split as {heads[0]}: train both with "
                             "--rollouts naming one store and the same --seed / --test-fraction.")
        if not (np.array_equal(pos.sample.numpy(), first.sample.numpy()) and
                np.array_equal(pos.reward.numpy(), first.reward.numpy())):
            raise ValueError(f"{h} reads other held-out positions than {heads[0]}: the rollouts changed.")
    y = first.reward.numpy()
    probs = [head.spec.p_correct(head.probs_from_hidden(model, pos.hidden)).numpy() for head, _, pos in read]
    unit_of = problem_units(records)
    groups = np.array([unit_of[int(t)] for t in first.task])
    differences = []
    for h, p in zip(heads[1:], probs[1:]):
        draws: list[float] = []

        def diff(idx: np.ndarray, p=p, draws=draws) -> float:
            draws.append(auroc(y[idx], p[idx]) - auroc(y[idx], probs[0][idx]))
            return draws[-1]

        ci = stats.bootstrap_ci(diff, groups, n_boot=n_boot, seed=seed)
        boot = np.array(draws[1:])  # the first call is the estimate on all rows
        boot = boot[np.isfinite(boot)]
        p_boot = float(min(1.0, 2 * min((boot <= 0).mean(), (boot >= 0).mean()))) if len(boot) else float("nan")
        differences.append({"head": h, "reference": heads[0], "auroc_diff": ci.estimate, "ci95": [ci.low, ci.high],
                            "p_boot": p_boot, "n_units": ci.n})
    for row, p_holm in zip(differences, stats.holm([d["p_boot"] for d in differences])):
        row["p_holm"] = float(p_holm)
    result = CompareResult(list(heads), {h: summary(y, p) for h, p in zip(heads, probs)}, differences,
                           n_questions=len(set(first.task.tolist())), n_units=len(set(groups.tolist())),
                           n_comparisons=len(differences), metadata={**model.metadata(), "n_boot": n_boot,
                                                                     "seed": seed})
    if out is not None:
        result.save(out)
    return result

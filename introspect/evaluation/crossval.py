"""k-fold cross-validation by problem of the head, shuffled-label heads and the logistic probe.

A single held-out split of a few dozen problems holds few correct samples; cross-validation
scores every problem once, out of fold, on the cached hidden states (no new sampling).
"""
from __future__ import annotations

import random

import numpy as np
import torch

from metalens.introspect.evaluation.evaluate import FRACTIONS, compare, fit_probe, rows_at_fraction, shuffled_heads
from metalens.introspect.heads.bins import BinSpec
from metalens.introspect.heads.features import Positions
from metalens.introspect.heads.train import train_head


def problem_folds(positions: Positions, k: int, seed: int = 0,
                  units: dict[int, int] | None = None) -> list[list[int]]:
    """`k` folds of whole problems (task indices), shuffled reproducibly by `seed`.

    With `units` (task index -> unit, `rollouts.problem_units`), the problems of one unit (commuted
    twins such as 3 + 4 and 4 + 3) always share a fold.
    """
    tasks = positions.task.unique().tolist()
    unit_of = units or {t: t for t in tasks}
    groups = sorted({unit_of[t] for t in tasks})
    if k < 2 or k > len(groups):
        raise ValueError(f"--cv {k} needs 2 <= k <= the number of independent problem units ({len(groups)}).")
    random.Random(seed).shuffle(groups)
    fold_of = {g: i % k for i, g in enumerate(groups)}
    return [[t for t in tasks if fold_of[unit_of[t]] == i] for i in range(k)]


def cross_validate(model, positions: Positions, spec: BinSpec, k: int = 5, fractions=FRACTIONS, steps: int = 100,
                   n_shuffles: int = 3, n_boot: int = 500, seed: int = 0, start: int | None = None,
                   levels: dict[int, int] | None = None, units: dict[int, int] | None = None,
                   progress: bool = False) -> dict:
    """Out-of-fold P(correct) for every position, scored per prefix fraction and over all positions.

    Folds hold whole problems. Each fold trains the head, `n_shuffles` shuffled-label heads and
    the probe on the other folds. `head_vs_shuffled` carries a bootstrap interval over problems.
    With `levels` (task index -> difficulty level), all positions are also scored within each
    level (`by_level`), which tells whether the head knows more than how hard a level is;
    `within_problem` (in every block) asks the same within single problems. With `units` (task
    index -> unit, `rollouts.problem_units`) folds keep a unit together and bootstraps resample units.
    """
    folds = problem_folds(positions, k, seed, units)
    tasks = [t for fold in folds for t in fold]
    n = len(positions.bin)
    p_head, p_probe, exp_len, const_len = (np.zeros(n) for _ in range(4))
    p_shuf = [np.zeros(n) for _ in range(n_shuffles)]
    iterator = folds
    if progress:
        from tqdm import tqdm

        iterator = tqdm(folds, desc="cross-validation folds")
    for fold in iterator:
        test = torch.isin(positions.task, torch.tensor(fold))
        train, sel = positions.select(~test), test.numpy()
        head = train_head(model, train, spec, steps=steps, seed=seed, start=start)
        probs = head.probs_from_hidden(model, positions.hidden[test])  # [n_test, K]
        p_head[sel], exp_len[sel] = spec.p_correct(probs).numpy(), spec.expected_remaining(probs).numpy()
        for out, null in zip(p_shuf, shuffled_heads(model, train, spec, n_shuffles, steps, seed, start)):
            out[sel] = spec.p_correct(null.probs_from_hidden(model, positions.hidden[test])).numpy()
        const_len[sel] = float(train.remaining.float().mean())  # the training folds' mean
        p_probe[sel] = fit_probe(train, seed).predict_proba(positions.hidden[test].numpy())[:, 1]
    y, groups = positions.reward.numpy(), positions.task.numpy()
    unit = groups if units is None else np.array([units[int(t)] for t in groups])
    remaining = positions.remaining.numpy()
    result = {"k": k, "n_tasks": len(tasks), "n_units": len(np.unique(unit)),
              "n_samples": int(positions.sample.unique().numel()),
              "n_correct_samples": int(y[rows_at_fraction(positions, 1.0).numpy()].sum()), "fractions": []}
    for f in fractions:
        rows = rows_at_fraction(positions, f).numpy()
        result["fractions"].append({
            "fraction": f, **compare(y[rows], {"head": p_head[rows], "probe": p_probe[rows]},
                                     [p[rows] for p in p_shuf], groups[rows], n_boot, seed, unit[rows]),
            "length_mae": float(np.abs(exp_len[rows] - remaining[rows]).mean()),
            "length_mae_constant": float(np.abs(const_len[rows] - remaining[rows]).mean())})
    result["all_positions"] = compare(y, {"head": p_head, "probe": p_probe}, p_shuf, groups, n_boot, seed, unit)
    if levels:
        level_of = np.array([levels[int(t)] for t in positions.task])
        result["by_level"] = {int(lv): compare(y[sel], {"head": p_head[sel], "probe": p_probe[sel]},
                                               [p[sel] for p in p_shuf], groups[sel], n_boot, seed, unit[sel])
                              for lv in np.unique(level_of) for sel in [level_of == lv]}
    return result

"""Calibration metrics for a probability of being correct: AUROC, Brier, ECE, reliability bins."""
from __future__ import annotations

import numpy as np

from metalens import stats
from metalens.power import interval_mde


def auroc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count half); NaN when one class is absent."""
    return stats.auroc(y, p)


def require_finite(value: float, what: str, fix: str) -> float:
    """`value`, or a ValueError naming `what` and the `fix` when it is NaN (e.g. an AUROC over one class)."""
    if not np.isfinite(value):
        raise ValueError(f"{what} is undefined (NaN): {fix}")
    return value


def brier(y: np.ndarray, p: np.ndarray) -> float:
    """Mean squared error of the probability."""
    return float(np.mean((np.asarray(p, float) - np.asarray(y, float)) ** 2))


def reliability(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> list[dict]:
    """Equal-width confidence bins: count, mean predicted and observed rate per non-empty bin."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    which = np.minimum((p * n_bins).astype(int), n_bins - 1)
    rows = []
    for b in range(n_bins):
        sel = which == b
        if sel.any():
            rows.append({"bin": b, "count": int(sel.sum()), "predicted": float(p[sel].mean()),
                         "observed": float(y[sel].mean())})
    return rows


def ece(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error: count-weighted |observed - predicted| over reliability bins."""
    rows = reliability(y, p, n_bins)
    total = sum(r["count"] for r in rows)
    return float(sum(r["count"] * abs(r["observed"] - r["predicted"]) for r in rows) / max(total, 1))


def correlation(y: np.ndarray, p: np.ndarray) -> float:
    """Pearson correlation of the predicted value with correctness (ZIP-RC reports it); NaN when
    either is constant."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    if len(y) < 2 or y.std() == 0 or p.std() == 0:
        return float("nan")
    return float(np.corrcoef(y, p)[0, 1])


def accuracy_at(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> float:
    """Share of rows where (p >= threshold) equals correctness (ZIP-RC's accuracy at 0.5)."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    return float(np.mean((p >= threshold) == (y == 1))) if len(y) else float("nan")


def summary(y: np.ndarray, p: np.ndarray) -> dict:
    """AUROC, Brier, ECE, correlation with correctness, accuracy at 0.5 and n for one set of predictions."""
    return {"auroc": auroc(y, p), "brier": brier(y, p), "ece": ece(y, p), "corr": correlation(y, p),
            "acc@0.5": accuracy_at(y, p), "n": int(len(y))}


def auroc_gap(y: np.ndarray, p: np.ndarray, baselines: list[np.ndarray], groups: np.ndarray,
              n_boot: int = 500, seed: int = 0) -> dict:
    """AUROC(p) minus the mean AUROC of `baselines`, with a 95 % interval over whole groups.

    Positions of one problem are correlated, so the bootstrap (`metalens.stats.bootstrap_ci`)
    resamples `groups` (problems, or units of problems), never single positions.
    `share_not_above` is the share of resamples whose gap is <= 0.
    """
    y, p = np.asarray(y), np.asarray(p)
    values: list[float] = []

    def gap(idx: np.ndarray) -> float:
        value = auroc(y[idx], p[idx]) - float(np.mean([auroc(y[idx], b[idx]) for b in baselines]))
        values.append(value)
        return value

    ci = stats.bootstrap_ci(gap, groups, n_boot=n_boot, seed=seed)
    draws = np.array(values[1:])  # the first call is the estimate on all rows
    draws = draws[np.isfinite(draws)]
    return {"gap": ci.estimate, "ci95": [ci.low, ci.high], "ci_method": ci.method,
            "share_not_above": float((draws <= 0).mean()) if len(draws) else float("nan"),
            "n_groups": ci.n, "n_boot": int(len(draws)), "mde": interval_mde(ci.low, ci.high, ci.n)}


def above_chance(y: np.ndarray, p: np.ndarray, groups: np.ndarray, n_boot: int = 500, seed: int = 0) -> dict:
    """AUROC(p) - 0.5 pooled over all rows, with a 95 % bootstrap interval over whole `groups`."""
    y, p = np.asarray(y), np.asarray(p)
    ci = stats.bootstrap_ci(lambda idx: auroc(y[idx], p[idx]) - 0.5, groups, n_boot=n_boot, seed=seed)
    return {**ci.to_dict(), "mde": interval_mde(ci.low, ci.high, ci.n)}


def within_problem_auroc(y: np.ndarray, p: np.ndarray, problems: np.ndarray, units: np.ndarray | None = None,
                         n_boot: int = 500, seed: int = 0) -> dict:
    """Mean over problems with mixed outcomes of the AUROC among that problem's own rows.

    Pooled AUROC also rewards ranking problems by difficulty; within one problem the difficulty is
    fixed, so this reads only whether the predictor tells its right samples from its wrong ones.
    The 95 % interval resamples problems (or their `units`: one unit per row, e.g. operand pairs).
    `n_mixed` of `n_problems` problems have both outcomes; the others cannot be scored.
    """
    y, p, problems = np.asarray(y), np.asarray(p), np.asarray(problems)
    units = problems if units is None else np.asarray(units)
    ids = np.unique(problems)
    scores, unit_of = [], []
    for t in ids:
        sel = problems == t
        scores.append(auroc(y[sel], p[sel]))
        unit_of.append(units[sel][0])
    scores = np.array(scores)
    mixed = np.isfinite(scores)
    if not mixed.any():
        return {"estimate": float("nan"), "low": float("nan"), "high": float("nan"), "n_mixed": 0,
                "n_problems": int(len(ids)), "method": "no problem has both outcomes"}
    scores, unit_of = scores[mixed], np.array(unit_of)[mixed]
    ci = stats.bootstrap_ci(lambda idx: float(scores[idx].mean()), unit_of, n_boot=n_boot, seed=seed)
    return {**ci.to_dict(), "n_mixed": int(mixed.sum()), "n_problems": int(len(ids)),
            "mde": interval_mde(ci.low, ci.high, ci.n)}  # as a distance from 0.5

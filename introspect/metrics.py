"""Calibration metrics for a probability of being correct: AUROC, Brier, ECE, reliability bins."""
from __future__ import annotations

import numpy as np


def auroc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count half); NaN when one class is absent.

    Rank-based rather than sklearn's so the bootstrap's thousands of calls stay cheap.
    """
    from scipy.stats import rankdata

    y, p = np.asarray(y).astype(bool), np.asarray(p, dtype=float)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((rankdata(p)[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


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


def summary(y: np.ndarray, p: np.ndarray) -> dict:
    """AUROC, Brier, ECE and n for one set of predictions."""
    return {"auroc": auroc(y, p), "brier": brier(y, p), "ece": ece(y, p), "n": int(len(y))}


def auroc_gap(y: np.ndarray, p: np.ndarray, baselines: list[np.ndarray], groups: np.ndarray,
              n_boot: int = 500, seed: int = 0) -> dict:
    """AUROC(p) minus the mean AUROC of `baselines`, with a 95 % interval over whole groups.

    Positions of one problem are correlated, so the bootstrap resamples `groups` (problem ids),
    never single positions. `share_not_above` is the share of resamples whose gap is <= 0.
    """
    y, p, groups = np.asarray(y), np.asarray(p), np.asarray(groups)
    _, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(inverse.max() + 1)]

    def gap(idx: np.ndarray) -> float:
        return auroc(y[idx], p[idx]) - float(np.mean([auroc(y[idx], b[idx]) for b in baselines]))

    rng = np.random.default_rng(seed)
    draws = np.array([gap(np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))]))
                      for _ in range(n_boot)])
    draws = draws[~np.isnan(draws)]
    if len(draws) == 0:
        return {"gap": float("nan"), "ci95": [float("nan")] * 2, "share_not_above": float("nan"),
                "n_groups": len(members), "n_boot": 0}
    return {"gap": gap(np.arange(len(y))), "ci95": [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))],
            "share_not_above": float((draws <= 0).mean()), "n_groups": len(members), "n_boot": int(len(draws))}

"""Calibration metrics for a probability of being correct: AUROC, Brier, ECE, reliability bins."""
from __future__ import annotations

import numpy as np


def auroc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve; NaN when only one class is present."""
    from sklearn.metrics import roc_auc_score

    y, p = np.asarray(y), np.asarray(p)
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, p))


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

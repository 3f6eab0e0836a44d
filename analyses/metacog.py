"""Metacognition metrics on arrays: discrimination (AUROC), decision deltas, calibration, the probe gap.

Pure functions of per-item numbers, so each can be checked on hand-made arrays. Conventions:
`correct` is one 0/1 (or bool) per item; a *score* is higher when the item is more likely right;
intervals are percentile bootstraps that resample whole groups (items, or operand sets for
arithmetic) through `metalens.stats.bootstrap_ci`.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from metalens.stats import Interval, auroc, bootstrap_ci


def _arrays(correct, *values) -> list[np.ndarray]:
    y = np.asarray(correct).astype(bool).ravel()
    out = [y]
    for v in values:
        v = np.asarray(v, dtype=float).ravel()
        if len(v) != len(y):
            raise ValueError(f"{len(v)} values for {len(y)} items: give one value per item.")
        out.append(v)
    return out


def _groups(groups, n: int) -> np.ndarray:
    g = np.arange(n) if groups is None else np.asarray(groups).ravel()
    if len(g) != n:
        raise ValueError(f"{len(g)} groups for {n} items: give one group id per item.")
    return g


def auroc_ci(correct, score, groups=None, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> Interval:
    """AUROC of `score` for telling right items from wrong ones, with a bootstrap interval over groups."""
    y, s = _arrays(correct, score)
    return bootstrap_ci(lambda rows: auroc(y[rows], s[rows]), _groups(groups, len(y)), n_boot, seed, level)


def withdraw_delta(withdraw, correct) -> float:
    """Withdrawal rate on wrong answers minus on right ones (positive: withdraws the wrong ones more).

    `withdraw` holds decisions (0/1) for rates, or probabilities for the expected ("soft") rates.
    NaN when all answers are right or all wrong.
    """
    y, w = _arrays(correct, withdraw)
    if y.all() or not y.any():
        return float("nan")
    return float(w[~y].mean() - w[y].mean())


def bet_delta(bet, correct) -> float:
    """Betting rate on right answers minus on wrong ones (positive: bets on the right ones more)."""
    y, b = _arrays(correct, bet)
    if y.all() or not y.any():
        return float("nan")
    return float(b[y].mean() - b[~y].mean())


def delta_ci(delta: Callable, decisions, correct, groups=None, n_boot: int = 1000, seed: int = 0) -> Interval:
    """`delta(decisions, correct)` (`withdraw_delta` or `bet_delta`) with a bootstrap interval over groups."""
    y, d = _arrays(correct, decisions)
    return bootstrap_ci(lambda rows: delta(d[rows], y[rows]), _groups(groups, len(y)), n_boot, seed)


def _bin_index(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width bin of each confidence in [0, 1]: [0, 1/n), ..., [(n-1)/n, 1] (1.0 in the last)."""
    if ((confidence < 0) | (confidence > 1)).any():
        raise ValueError("Confidences must lie in [0, 1] for calibration; rescale the signal first.")
    return np.minimum((confidence * n_bins).astype(int), n_bins - 1)


def reliability(confidence, correct, n_bins: int = 10) -> list[dict]:
    """Reliability-curve bins (equal width on [0, 1]): range, count, mean confidence and accuracy; empty bins left out."""
    y, c = _arrays(correct, confidence)
    idx = _bin_index(c, n_bins)
    rows = []
    for b in range(n_bins):
        inside = idx == b
        if inside.any():
            rows.append({"low": b / n_bins, "high": (b + 1) / n_bins, "n": int(inside.sum()),
                         "confidence": float(c[inside].mean()), "accuracy": float(y[inside].mean())})
    return rows


def ece(confidence, correct, n_bins: int = 10) -> float:
    """Expected calibration error: sum over equal-width bins of (share of items) x |accuracy - mean confidence|."""
    y, c = _arrays(correct, confidence)
    return float(sum(r["n"] / len(y) * abs(r["accuracy"] - r["confidence"]) for r in reliability(c, y, n_bins)))


def brier(confidence, correct) -> float:
    """Brier score: mean squared difference between confidence and the 0/1 outcome (0 is perfect)."""
    y, c = _arrays(correct, confidence)
    return float(np.mean((c - y) ** 2))


def gap_ci(correct, internal, behavioural: dict[str, np.ndarray], groups=None, n_boot: int = 1000,
           seed: int = 0) -> Interval:
    """"Knows but does not say": AUROC of `internal` minus the best AUROC among `behavioural` scores.

    A paired bootstrap over groups: each resample scores every signal on the same items and takes
    the best behavioural signal anew, so picking the best is part of what the interval covers.
    """
    if not behavioural:
        raise ValueError("No behavioural signal to compare with: pass at least one.")
    y, s = _arrays(correct, internal)
    others = [_arrays(correct, v)[1] for v in behavioural.values()]

    def gap(rows):
        return auroc(y[rows], s[rows]) - np.nanmax([auroc(y[rows], o[rows]) for o in others])

    return bootstrap_ci(gap, _groups(groups, len(y)), n_boot, seed)

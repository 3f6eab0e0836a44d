"""The correlated-axes control of the reporting task.

Median-split labels of different axes correlate by chance on a small pool: a model that reports
only PC1 then also scores above its shuffled baseline on PC8 when PC8's labels agree with PC1's on
most pool sentences. An axis is therefore only called reportable when the model also beats a
learner that knows every *other* tested axis' label of each item: a logistic regression, fitted on
the whole pool, predicting this axis' label from the other axes' labels, scored on the same items
as the model. Fitted on the very items it is scored on, the learner is at its strongest, which
makes the control conservative.
"""
from __future__ import annotations

import numpy as np


def other_axes_p1(labels) -> np.ndarray:
    """[n_texts, n_axes]: per axis, p(label 1) predicted from the other axes' labels of the same text.

    labels: [n_texts, n_axes] binary. With one axis (nothing else to know) the prediction is the
    axis' base rate; an axis whose labels are all alike is predicted exactly.
    """
    from sklearn.linear_model import LogisticRegression

    labels = np.asarray(labels)
    n, n_axes = labels.shape
    out = np.zeros((n, n_axes))
    for a in range(n_axes):
        y = labels[:, a]
        others = np.delete(labels, a, axis=1).astype(float)
        if len(np.unique(y)) < 2:
            out[:, a] = float(y[0] == 1) if n else 0.5
        elif others.shape[1] == 0:
            out[:, a] = y.mean()
        else:
            # Effectively unregularised: with one other axis, p(label 1) is each cell's own frequency, so the
            # learner is at least as good on the pool as any rule built on that axis' label (a copier included).
            fit = LogisticRegression(C=1e4, max_iter=5000).fit(others, y)
            out[:, a] = fit.predict_proba(others)[:, list(fit.classes_).index(1)]
    return out


def score_predictions(p1: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """1 where p(label 1) `p1` puts more than half on the true label, 0 where less, 0.5 for a coin flip."""
    p_true = np.where(np.asarray(truth) == 1, p1, 1 - np.asarray(p1))
    return np.where(np.isclose(p_true, 0.5), 0.5, (p_true > 0.5).astype(float))

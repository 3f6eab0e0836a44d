"""Linear probes: logistic regression on activations, with cross-validation and a held-out split."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from metalens.artifact import read_artifact, read_json, write_artifact


def _as_numpy(x) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x)


@dataclass
class Probe:
    """A binary linear probe in the activations' own coordinates: p(1) = sigmoid(acts @ weight + bias).

    `cv_accuracy` / `cv_std` are k-fold scores on the training split; `test_accuracy` is on a
    held-out split the probe never saw (NaN if none was kept).
    """

    weight: Tensor  # [d_model]
    bias: float
    cv_accuracy: float = float("nan")
    cv_std: float = float("nan")
    test_accuracy: float = float("nan")
    metadata: dict = field(default_factory=dict)

    @property
    def direction(self) -> Tensor:
        """The unit vector the probe reads, [d_model]; positive means label 1."""
        return self.weight / self.weight.norm()

    def decision(self, acts) -> Tensor:
        """Logits `acts @ weight + bias`, [n]."""
        acts = torch.as_tensor(_as_numpy(acts), dtype=torch.float32)
        if acts.shape[-1] != self.weight.shape[0]:
            raise ValueError(f"Activations have width {acts.shape[-1]}, the probe expects {self.weight.shape[0]}.")
        return acts @ self.weight + self.bias

    def predict_proba(self, acts) -> Tensor:
        """p(label 1) per row, [n]."""
        return torch.sigmoid(self.decision(acts))

    def predict(self, acts) -> Tensor:
        """Predicted labels 0/1, [n]."""
        return (self.decision(acts) > 0).long()

    def score(self, acts, labels) -> float:
        """Accuracy on (acts, labels)."""
        return float((self.predict(acts).numpy() == _as_numpy(labels)).mean())

    def save(self, path: str | Path) -> Path:
        """Write `probe.safetensors` and `probe.json` into directory `path`."""
        meta = {"bias": self.bias, "cv_accuracy": self.cv_accuracy, "cv_std": self.cv_std,
                "test_accuracy": self.test_accuracy, "metadata": self.metadata}
        return write_artifact(path, "probe", {"weight": self.weight.float()}, meta)

    @classmethod
    def load(cls, path: str | Path) -> "Probe":
        """Read what `save` wrote."""
        declared = read_json(Path(path) / "probe.json", "probe metadata") if (Path(path) / "probe.json").exists() else {}
        width = (declared.get("metadata") or {}).get("d_model") if isinstance(declared.get("metadata"), dict) else None
        tensors, meta = read_artifact(path, "probe", "point at a directory written by Probe.save.",
                                      expect={"weight": (width,)}, required=("bias", "metadata"))
        nan = float("nan")
        return cls(tensors["weight"], meta["bias"],
                   meta["cv_accuracy"] if meta["cv_accuracy"] is not None else nan,
                   meta["cv_std"] if meta["cv_std"] is not None else nan,
                   meta["test_accuracy"] if meta["test_accuracy"] is not None else nan, meta["metadata"])


def group_folds(labels, groups, k: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """`k` (train, test) index splits of rows with these `labels`, stratified by label and keeping
    each group whole: no group has rows on both sides of any split (scikit-learn's
    StratifiedGroupKFold). `k` is lowered to what the groups allow (at most the fewest groups of a class)."""
    from sklearn.model_selection import StratifiedGroupKFold

    y, g = np.asarray(labels).astype(int).ravel(), np.asarray(groups).ravel()
    if len(y) != len(g):
        raise ValueError(f"{len(g)} groups for {len(y)} labels: give one group id per row.")
    per_class = min(len(np.unique(g[y == c])) for c in np.unique(y))
    k = min(k, per_class)
    if k < 2:
        raise ValueError(f"Too few groups to split: a class has {per_class} group(s); group-aware splits need 2 or more per class.")
    folds = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(train, test) for train, test in folds.split(np.zeros(len(y)), y, g)]


def train_probe(acts, labels, *, test_size: float = 0.2, cv: int = 5, C: float = 1.0, seed: int = 0,
                groups=None, metadata: dict | None = None) -> Probe:
    """A logistic-regression `Probe` fitted on `acts` [n, d] and binary `labels` [n].

    Features are standardised inside the fit (so C means the same at every layer) and the
    weights mapped back to raw activation space. `test_size` of the rows, stratified, are held
    out; `cv`-fold accuracy is measured on the rest (cv=0 skips it). With `groups` (one id per
    row; near-copies share one) the held-out split and every CV fold keep each group on one side
    (`group_folds`), so a probe is never scored on a near-copy of a sentence it was trained on.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = _as_numpy(acts).astype(np.float64), _as_numpy(labels).astype(int)
    if X.ndim != 2 or len(X) != len(y):
        raise ValueError(f"acts must be [n, d] and labels [n]; got {X.shape} and {y.shape}.")
    if sorted(set(y.tolist())) != [0, 1]:
        raise ValueError(f"Probes are binary: labels must be 0 and 1 (both present); got {sorted(set(y.tolist()))}.")
    g = None if groups is None else np.asarray(groups).ravel()
    if g is not None and len(g) != len(y):
        raise ValueError(f"{len(g)} groups for {len(y)} rows: give one group id per row.")
    g_fit = g
    if test_size > 0 and g is not None:
        fit_idx, test_idx = group_folds(y, g, max(2, round(1 / test_size)), seed)[0]
        X_fit, X_test, y_fit, y_test, g_fit = X[fit_idx], X[test_idx], y[fit_idx], y[test_idx], g[fit_idx]
    elif test_size > 0:
        X_fit, X_test, y_fit, y_test = train_test_split(X, y, test_size=test_size, stratify=y, random_state=seed)
    else:
        X_fit, y_fit, X_test, y_test = X, y, None, None

    def make():
        return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))

    cv_scores = np.array([np.nan])
    if cv and cv > 1 and g_fit is not None:
        cv_scores = cross_val_score(make(), X_fit, y_fit, cv=group_folds(y_fit, g_fit, cv, seed))
    elif cv and cv > 1:
        folds = StratifiedKFold(n_splits=min(cv, np.bincount(y_fit).min()), shuffle=True, random_state=seed)
        cv_scores = cross_val_score(make(), X_fit, y_fit, cv=folds)
    pipe = make().fit(X_fit, y_fit)
    scaler, lr = pipe[0], pipe[1]
    w = lr.coef_[0] / scaler.scale_  # standardised -> raw coordinates
    b = float(lr.intercept_[0] - (scaler.mean_ * w).sum())
    probe = Probe(torch.tensor(w, dtype=torch.float32), b, float(np.mean(cv_scores)), float(np.std(cv_scores)),
                  metadata={"C": C, "seed": seed, "test_size": test_size, "cv": cv, "n": len(y),
                            "n_groups": len(np.unique(g)) if g is not None else len(y), "grouped": g is not None,
                            **(metadata or {})})
    if X_test is not None:
        probe.test_accuracy = probe.score(X_test, y_test)
    return probe

"""Target axes of the neurofeedback paradigm (PCA axes and a logistic-regression axis) and labels.

Following Ji-An et al. (2025), each sentence's activation (by default its mean residual stream
over the sentence's tokens) is projected on an axis; the projection, split at the median, is
the sentence's neurofeedback label. Axes and medians are fitted on a `fit` split only; the
sentences later shown and tested come from the disjoint `pool` split, so no tested sentence
shapes its own label's definition. With groups (near-copies share one), the split keeps each
group on one side, so no tested sentence has a near-copy among the fit sentences either.

`fit_paper_axes` is the paper's own label rule (its public code): each axis scores a sentence by
its projection divided by the fit split's SD of projections, and the label is 1 when the score is
>= 0 -- at the fit mean for PCs, at the decision boundary of an unregularised-scale logistic
regression (scikit-learn saga on raw activations) for LR. No median: labels need not be balanced.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from metalens.artifact import read_artifact, read_json, write_artifact
from metalens.probes.probe import group_folds, train_probe

DEFAULT_PCS = (1, 2, 4, 8, 32, 128)


def split_indices(n: int, fit_fraction: float = 0.5, seed: int = 0, groups=None) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint (fit, pool) index arrays covering range(n).

    With `groups` (one id per index), whole groups go to one side: groups are taken in a seeded
    random order and each joins `fit` while that brings it closer to `fit_fraction` of n, so the
    sizes land near the target and no group is on both sides.
    """
    if not 0 < fit_fraction < 1:
        raise ValueError(f"fit_fraction must be in (0, 1), not {fit_fraction}.")
    k = round(n * fit_fraction)
    if groups is None:
        order = np.random.default_rng(seed).permutation(n)
        return np.sort(order[:k]), np.sort(order[k:])
    groups = np.asarray(groups).ravel()
    if len(groups) != n:
        raise ValueError(f"{len(groups)} groups for n={n}: give one group id per index.")
    names, inverse = np.unique(groups, return_inverse=True)
    if len(names) < 2:
        raise ValueError("All indices are in one group: a group-aware split needs at least two groups.")
    sizes = np.bincount(inverse)
    fit_groups, taken = [], 0
    for g in np.random.default_rng(seed).permutation(len(names)):
        if abs(taken + sizes[g] - k) < abs(taken - k):
            fit_groups.append(g)
            taken += sizes[g]
    in_fit = np.isin(inverse, fit_groups)
    if in_fit.all() or not in_fit.any():
        raise ValueError(f"fit_fraction={fit_fraction} leaves one side empty with {len(names)} groups.")
    return np.flatnonzero(in_fit), np.flatnonzero(~in_fit)


@dataclass
class Axes:
    """Unit directions [n_axes, d_model] through `center`, with each axis' name, the share of the
    fit split's variance it explains, and the median projection used to binarise labels."""

    names: list[str]
    directions: Tensor  # [n_axes, d_model]
    center: Tensor  # [d_model]
    explained_variance: Tensor  # [n_axes], fraction of total variance on the fit split
    thresholds: Tensor  # [n_axes], median projection on the fit split (paper rule: 0 for PCs, the LR boundary)
    metadata: dict = field(default_factory=dict)
    scales: Tensor | None = None  # [n_axes], SD of the fit split's projections (paper rule), else None

    @property
    def rule(self) -> str:
        """"median" (`fit_axes`) or "paper" (`fit_paper_axes`): how projections become labels."""
        return self.metadata.get("rule", "median")

    def project(self, acts) -> Tensor:
        """Projections [n, n_axes] of activations [n, d_model] on every axis."""
        acts = torch.as_tensor(acts, dtype=torch.float32)
        if acts.shape[-1] != self.center.shape[0]:
            raise ValueError(f"Activations have width {acts.shape[-1]}, the axes {self.names} expect "
                             f"{self.center.shape[0]}: they were fitted on another model.")
        return (acts - self.center) @ self.directions.T

    def scores(self, acts) -> Tensor:
        """The paper's neurofeedback scores [n, n_axes]: (projection - threshold) / fit-split SD."""
        scales = self.scales if self.scales is not None else torch.ones_like(self.thresholds)
        return (self.project(acts) - self.thresholds) / scales

    def labels(self, acts, levels: int = 2) -> Tensor:
        """Neurofeedback labels [n, n_axes]: 1 above the fit-split median, else 0 (levels=2); under
        the paper rule, 1 where the score is >= 0.

        With levels > 2 the fit split's quantiles cut the projection into that many bins.
        """
        proj = self.project(acts)
        if levels == 2:
            return (proj >= self.thresholds).long() if self.rule == "paper" else (proj > self.thresholds).long()
        cuts = torch.tensor(np.stack(self.metadata["quantiles"][str(levels)]), dtype=torch.float32)  # [levels-1, n_axes]
        return (proj.unsqueeze(1) > cuts.unsqueeze(0)).sum(1)

    def index(self, name: str) -> int:
        """Position of the axis called `name`."""
        if name not in self.names:
            raise KeyError(f"No axis '{name}'; axes are {self.names}.")
        return self.names.index(name)

    def save(self, path: str | Path) -> Path:
        """Write `axes.safetensors` and `axes.json` into directory `path`."""
        tensors = {"directions": self.directions, "center": self.center,
                   "explained_variance": self.explained_variance, "thresholds": self.thresholds}
        if self.scales is not None:
            tensors["scales"] = self.scales
        return write_artifact(path, "axes", tensors, {"names": self.names, "metadata": self.metadata})

    @classmethod
    def load(cls, path: str | Path) -> "Axes":
        """Read what `save` wrote."""
        hint = "point at a directory written by Axes.save."
        declared = read_json(Path(path) / "axes.json", "axes metadata") if (Path(path) / "axes.json").exists() else {}
        names = declared.get("names")
        n = len(names) if isinstance(names, list) else None
        width = (declared.get("metadata") or {}).get("d_model") if isinstance(declared.get("metadata"), dict) else None
        expect = {"directions": (n, width), "center": (width,), "explained_variance": (n,), "thresholds": (n,)}
        t, meta = read_artifact(path, "axes", hint, expect=expect, required=("names", "metadata"))
        if n is None:
            raise ValueError(f"{Path(path) / 'axes.json'}: 'names' must be a list of axis names; re-save the axes.")
        if "scales" in t and tuple(t["scales"].shape) != (n,):
            raise ValueError(f"{Path(path) / 'axes.safetensors'}: tensor 'scales' has shape {list(t['scales'].shape)}, "
                             f"expected [{n}]: it was edited; re-save the axes.")
        return cls(meta["names"], t["directions"], t["center"], t["explained_variance"], t["thresholds"], meta["metadata"],
                   t.get("scales"))


def fit_axes(acts_fit, labels_fit=None, pcs=DEFAULT_PCS, *, logistic: bool = True, C: float = 1.0,
             max_levels: int = 4, seed: int = 0, metadata: dict | None = None, groups=None,
             calibration: float = 1 / 3) -> Axes:
    """PCA axes `PC{k}` for k in `pcs` (1-based; those beyond the rank are dropped) and, with
    `labels_fit` and `logistic`, the logistic-regression axis `LR` (positive = label 1).

    Only `acts_fit` [n_fit, d_model] is used: pass the fit split, never tested sentences. A PC's
    threshold is the median fit projection. LR is trained on part of the fit split and its
    threshold is the median projection of the rest (`calibration`, whole `groups`): an LR that
    separates its own training sentences puts their median anywhere in the gap between the classes,
    which labelled ~90 % of unseen sentences alike, so a model answering one label all the time
    looked like it reported the axis.
    """
    X = torch.as_tensor(acts_fit, dtype=torch.float64)
    if X.ndim != 2 or len(X) < 4:
        raise ValueError(f"acts_fit must be [n >= 4, d_model]; got {tuple(X.shape)}.")
    center = X.mean(0)
    Xc = X - center
    _, s, vt = torch.linalg.svd(Xc, full_matrices=False)  # rows of vt: PCs by variance
    total = (s**2).sum()
    rank = int((s > s[0] * 1e-6).sum())
    names, dirs, var = [], [], []
    for k in pcs:
        if 1 <= k <= rank:
            names.append(f"PC{k}")
            dirs.append(vt[k - 1])
            var.append(s[k - 1] ** 2 / total)
    calib = None
    if logistic and labels_fit is not None:
        train, calib = _calibration_split(labels_fit, groups, len(X), calibration, seed)
        probe = train_probe(X[train].float(), np.asarray(labels_fit)[train], test_size=0, cv=0, C=C, seed=seed)
        w = probe.direction.double()
        names.append("LR")
        dirs.append(w)
        var.append(((Xc @ w) ** 2).sum() / total)
    if not dirs:
        raise ValueError(f"No axis to fit: pcs={pcs} exceed the rank {rank} and no labels were given.")
    directions = torch.stack(dirs)
    proj = Xc @ directions.T  # [n_fit, n_axes]

    def quantile(q: float) -> Tensor:  # [n_axes]; LR's from its calibration rows only
        out = torch.quantile(proj, q, dim=0)
        if calib is not None:
            out[-1] = torch.quantile(proj[calib, -1], q)
        return out

    quantiles = {str(q): [quantile(i / q).float().tolist() for i in range(1, q)] for q in range(3, max_levels + 1)}
    meta = {"n_fit": len(X), "pcs": list(pcs), "seed": seed, "quantiles": quantiles,
            "lr_calibration": None if calib is None else {"n": len(calib), "fraction": calibration},
            **(metadata or {})}
    return Axes(names, directions.float(), center.float(), torch.stack(var).float(),
                quantile(0.5).float(), meta)  # midpoint of the middle pair: no point sits on it


def _calibration_split(labels, groups, n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, calibration) row indices of the fit split, stratified by label, groups kept whole."""
    if not 0 < fraction < 1:
        raise ValueError(f"calibration must be a fraction in (0, 1), got {fraction}.")
    groups = np.arange(n) if groups is None else np.asarray(groups).ravel()
    train, calib = group_folds(labels, groups, max(2, round(1 / fraction)), seed)[0]
    return train, calib


def fit_paper_axes(acts_fit, labels_fit=None, pcs=DEFAULT_PCS, *, logistic: bool = True, C: float = 1.0,
                   max_iter: int = 1000, seed: int = 0, metadata: dict | None = None) -> Axes:
    """Axes under the paper's label rule (Ji-An et al., 2025, public code): `PC{k}` through the fit
    mean with threshold 0, and `LR` from scikit-learn's saga logistic regression on the raw
    (unstandardised) activations, thresholded at its decision boundary; `scales` holds each axis'
    SD of fit projections, so `scores` = projection / SD and `labels` = score >= 0.

    Only `acts_fit` [n_fit, d_model] is used. `pcs` may be `"all"`: every PC within the rank
    (the paper's precision baseline compares a target with all of them).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    import warnings

    X = torch.as_tensor(acts_fit, dtype=torch.float64)
    if X.ndim != 2 or len(X) < 4:
        raise ValueError(f"acts_fit must be [n >= 4, d_model]; got {tuple(X.shape)}.")
    center = X.mean(0)
    Xc = X - center
    _, s, vt = torch.linalg.svd(Xc, full_matrices=False)
    total = (s**2).sum()
    rank = int((s > s[0] * 1e-6).sum())
    pcs = tuple(range(1, rank + 1)) if pcs == "all" else tuple(pcs)
    names, dirs, thresholds = [], [], []
    for k in pcs:
        if 1 <= k <= rank:
            names.append(f"PC{k}")
            dirs.append(vt[k - 1])
            thresholds.append(0.0)  # the fit mean
    meta = {"rule": "paper", "n_fit": len(X), "pcs": list(pcs), "seed": seed, **(metadata or {})}
    if logistic and labels_fit is not None:
        clf = LogisticRegression(C=C, solver="saga", max_iter=max_iter, random_state=seed)
        with warnings.catch_warnings(record=True) as caught:  # saga on raw activations often stops at max_iter
            warnings.simplefilter("always", ConvergenceWarning)
            clf.fit(X.numpy(), np.asarray(labels_fit).ravel())
        w = torch.as_tensor(clf.coef_[0], dtype=torch.float64)
        norm = w.norm()
        names.append("LR")
        dirs.append(w / norm)
        # w.x + b = 0  <=>  (x - center).u = -(w.center + b) / |w|
        thresholds.append(float(-(w @ center + float(clf.intercept_[0])) / norm))
        meta.update(lr_solver="saga", lr_C=C, lr_n_iter=int(clf.n_iter_[0]),
                    lr_converged=not any(issubclass(c.category, ConvergenceWarning) for c in caught))
    if not dirs:
        raise ValueError(f"No axis to fit: pcs={pcs} exceed the rank {rank} and no labels were given.")
    directions = torch.stack(dirs)
    proj = Xc @ directions.T  # [n_fit, n_axes]
    scales = proj.std(0, unbiased=False)  # the paper divides by the population SD of the fit scores
    meta["quantiles"] = {str(q): [torch.quantile(proj, i / q, dim=0).float().tolist() for i in range(1, q)]
                         for q in range(3, 5)}
    return Axes(names, directions.float(), center.float(), ((proj**2).sum(0) / total).float(),
                torch.tensor(thresholds, dtype=torch.float32), meta, scales.float())

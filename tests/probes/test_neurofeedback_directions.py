"""Target axes and labels: PCs and the LR axis recover planted structure, and no tested
sentence can influence the axes or the thresholds that label it."""
import numpy as np
import torch

from metalens.probes import Axes, fit_axes
from metalens.probes.directions import split_indices


def data(n=300, d=40, seed=0):
    rng = np.random.default_rng(seed)
    big = np.eye(d)[0]  # high-variance direction
    sem = np.eye(d)[5]  # low-variance but label-carrying direction
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, d)) * 0.3 + np.outer(rng.normal(size=n) * 5, big) + np.outer(2 * y - 1, sem)
    return torch.tensor(X, dtype=torch.float32), y, big, sem


def test_pcs_and_lr_axis_recover_planted_directions():
    X, y, big, sem = data()
    axes = fit_axes(X, y, pcs=(1, 2, 4))
    assert axes.names == ["PC1", "PC2", "PC4", "LR"]
    assert abs(float(axes.directions[0] @ torch.tensor(big, dtype=torch.float32))) > 0.99
    assert float(axes.directions[-1] @ torch.tensor(sem, dtype=torch.float32)) > 0.8
    ev = axes.explained_variance
    assert ev[0] > ev[1] > ev[2] and ev[0] > 0.8


def test_median_split_balances_the_fit_split():
    X, y, _, _ = data()
    axes = fit_axes(X, y, pcs=(1, 2))
    assert (axes.labels(X).float().mean(0) == 0.5).all()


def test_pcs_beyond_rank_are_dropped():
    X, y, _, _ = data(n=10)
    assert fit_axes(X, y, pcs=(1, 128)).names == ["PC1", "LR"]


def test_split_is_disjoint_and_complete():
    fit, pool = split_indices(101, 0.5, seed=3)
    assert len(set(fit) & set(pool)) == 0 and sorted([*fit, *pool]) == list(range(101))


def test_tested_sentences_cannot_leak_into_axes_or_labels():
    X, y, _, _ = data()
    fit, pool = split_indices(len(X), 0.5, seed=0)
    axes = fit_axes(X[fit], y[fit], pcs=(1, 2, 8))
    poisoned = X.clone()
    poisoned[pool] = poisoned[pool] * 50 + 100  # wildly change every tested sentence
    y2 = y.copy()
    y2[pool] = 1 - y2[pool]
    axes2 = fit_axes(poisoned[fit], y2[fit], pcs=(1, 2, 8))
    assert torch.equal(axes.directions, axes2.directions)
    assert torch.equal(axes.thresholds, axes2.thresholds)
    # A test sentence's label depends on its own activation only, through the fit-split threshold.
    single = axes.labels(X[pool[:1]])
    assert torch.equal(single, axes.labels(X[pool])[:1])


def test_multi_level_labels_cut_at_fit_quantiles():
    X, y, _, _ = data()
    axes = fit_axes(X, y, pcs=(1,), max_levels=4)
    levels = axes.labels(X, levels=4)
    assert set(levels.unique().tolist()) == {0, 1, 2, 3}
    counts = torch.bincount(levels[:, 0])
    assert (counts - len(X) / 4).abs().max() <= 2


def test_axes_save_load_round_trip(tmp_path):
    X, y, _, _ = data()
    axes = fit_axes(X, y, pcs=(1, 2))
    back = Axes.load(axes.save(tmp_path / "axes"))
    assert back.names == axes.names and torch.equal(back.labels(X), axes.labels(X))

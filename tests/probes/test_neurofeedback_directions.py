"""Target axes and labels: PCs and the LR axis recover planted structure, and no tested
sentence can influence the axes or the thresholds that label it (checked through the real
`run_neurofeedback` path, with a leaking variant that the same check catches)."""
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


def test_median_split_balances_the_fit_split_and_lr_its_calibration_rows():
    X, y, _, _ = data()
    axes = fit_axes(X, y, pcs=(1, 2))
    assert (axes.labels(X)[:, :2].float().mean(0) == 0.5).all()
    assert axes.metadata["lr_calibration"]["n"] == 100  # a third of the 300 fit rows
    assert 0.4 <= float(axes.labels(X)[:, 2].float().mean()) <= 0.6


def test_lr_labels_unseen_sentences_in_balance_where_it_separates_its_training_rows():
    # More dimensions than fit rows: the LR separates its training rows, whose median then sits
    # anywhere in the gap between the classes; thresholding there labelled 5-90 % of unseen rows
    # alike. Its threshold now comes from fit rows it was not trained on.
    rng = np.random.default_rng(0)
    for _ in range(4):
        y = rng.integers(0, 2, 320)
        X = rng.normal(size=(320, 300)) + np.outer(2 * y - 1, np.eye(300)[3]) * 0.5 + rng.normal(size=300) * 0.5
        X = torch.tensor(X, dtype=torch.float32)
        axes = fit_axes(X[:80], y[:80], pcs=(1,))
        assert 0.3 <= float(axes.labels(X[80:])[:, -1].float().mean()) <= 0.7


def test_pcs_beyond_rank_are_dropped():
    X, y, _, _ = data(n=10)
    assert fit_axes(X, y, pcs=(1, 128)).names == ["PC1", "LR"]


def test_split_is_disjoint_and_complete():
    fit, pool = split_indices(101, 0.5, seed=3)
    assert len(set(fit) & set(pool)) == 0 and sorted([*fit, *pool]) == list(range(101))


def test_a_label_depends_only_on_its_own_activation():
    X, y, _, _ = data()
    fit, pool = split_indices(len(X), 0.5, seed=0)
    axes = fit_axes(X[fit], y[fit], pcs=(1, 2, 8))
    assert torch.equal(axes.labels(X[pool[:1]]), axes.labels(X[pool])[:1])


LEAK_CFG = {"layer": 1, "max_sentences": 40, "pcs": (1, 2), "n_values": (0, 2), "draws": 1, "control_examples": 2,
            "implicit_targets": ("LR",), "implicit_trials": 1, "explicit_targets": ()}


def fitted_axes(model, monkeypatch, perturb=None):
    """Run `run_neurofeedback` through its real path, with the captured activations of the
    sentences at `perturb` (indices into the run's dataset) wildly changed; returns the result."""
    import metalens
    from metalens.probes import NeurofeedbackConfig, run_neurofeedback

    real = metalens.capture

    def capture(*args, **kwargs):
        acts = real(*args, **kwargs)
        if perturb is not None:
            for site in acts.sites:
                acts.acts[site][perturb] = acts.acts[site][perturb] * 50 + 100
        return acts

    monkeypatch.setattr(metalens, "capture", capture)
    return run_neurofeedback(model, NeurofeedbackConfig.quick(**LEAK_CFG), progress=False)


def same_axes(a, b) -> bool:
    return (a.names == b.names and torch.equal(a.directions, b.directions) and torch.equal(a.center, b.center)
            and torch.equal(a.thresholds, b.thresholds) and torch.equal(a.explained_variance, b.explained_variance))


def test_perturbing_every_tested_sentence_leaves_axes_and_thresholds_unchanged(tiny_llama, monkeypatch):
    clean = fitted_axes(tiny_llama, monkeypatch)
    pool = clean.data["data"]["pool_indices"]
    poisoned = fitted_axes(tiny_llama, monkeypatch, perturb=pool)
    assert poisoned.data["data"]["pool_indices"] == pool
    assert same_axes(clean.axes, poisoned.axes)
    # The perturbation did reach the run: the pool's labels (its projections) changed.
    assert clean.data["data"]["pool_label_balance"] != poisoned.data["data"]["pool_label_balance"]


def test_the_leak_check_catches_a_run_that_fits_on_tested_sentences(tiny_llama, monkeypatch):
    import metalens.probes.neurofeedback as nf

    real_split = nf.split_indices

    def leaky_split(n, fit_fraction=0.5, seed=0, groups=None):  # fits on every sentence, pool included
        _, pool = real_split(n, fit_fraction, seed, groups=groups)
        return np.arange(n), pool

    monkeypatch.setattr(nf, "split_indices", leaky_split)
    clean = fitted_axes(tiny_llama, monkeypatch)
    poisoned = fitted_axes(tiny_llama, monkeypatch, perturb=clean.data["data"]["pool_indices"])
    assert not same_axes(clean.axes, poisoned.axes)


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

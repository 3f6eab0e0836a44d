"""Linear probes: planted directions are recovered, probes round-trip, sweeps cover layers."""
import numpy as np
import pytest
import torch

from metalens.probes import LayerSweep, Probe, sweep_layers, train_probe


def planted(n=1000, d=32, seed=0, margin=4.0):
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=d)
    direction /= np.linalg.norm(direction)
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, d)) * 2.0 + np.outer((2 * y - 1) * margin / 2, direction) + 5.0  # offset: bias must absorb it
    return X, y, direction


def test_probe_recovers_planted_direction():
    X, y, direction = planted()
    probe = train_probe(X, y)
    cos = float(probe.direction @ torch.tensor(direction, dtype=torch.float32))
    assert cos > 0.9
    assert probe.test_accuracy > 0.78 and probe.cv_accuracy > 0.78  # Bayes accuracy is Phi(1) = 0.84


def test_probe_on_label_free_data_is_near_chance():
    rng = np.random.default_rng(1)
    probe = train_probe(rng.normal(size=(300, 16)), rng.integers(0, 2, 300))
    assert 0.35 < probe.cv_accuracy < 0.65


def test_probe_save_load_scores_identically(tmp_path):
    X, y, _ = planted(seed=2)
    probe = train_probe(X, y, metadata={"layer": 3})
    probe.save(tmp_path / "p")
    back = Probe.load(tmp_path / "p")
    assert torch.equal(back.predict(X), probe.predict(X))
    assert back.metadata["layer"] == 3 and back.test_accuracy == pytest.approx(probe.test_accuracy)


def test_probe_rejects_non_binary_labels():
    with pytest.raises(ValueError, match="binary"):
        train_probe(np.zeros((10, 3)), [0, 1, 2] * 3 + [0])


def test_probe_checks_activation_width():
    X, y, _ = planted(d=8)
    with pytest.raises(ValueError, match="width"):
        train_probe(X, y).predict(np.zeros((2, 5)))


def test_sweep_layers_trains_one_probe_per_layer_and_plots(tiny_gemma, tmp_path):
    texts = [f"{w} {i}" for i in range(20) for w in ("good", "bad")]
    labels = [1, 0] * 20
    sweep = sweep_layers(tiny_gemma, texts, labels, [0, 2], cv=3)
    assert sweep.layers == [0, 2] and len(sweep.probes) == 2
    # The first character alone separates the classes: every layer's probe should find it.
    assert all(p.cv_accuracy > 0.9 for p in sweep.probes)
    fig = sweep.figure()
    assert len(fig.data) == 2 and list(fig.data[0].x) == [0, 2]
    back = LayerSweep.load(sweep.save(tmp_path / "sweep"))
    assert back.layers == [0, 2] and back.best_layer == sweep.best_layer

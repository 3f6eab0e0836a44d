"""SteeringVector: training finds planted directions, apply edits and cleans up, save/load, errors."""
from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import save_file

import metalens
import metalens.steering
from metalens.sites import resid_post
from metalens.steering import SteeringVector, train_steering_vector

POS = ["the sea is calm", "waves on the shore", "a ship at sea", "ocean tides"]
NEG = ["the desk is tidy", "a pen on paper", "a car on a road", "office chairs"]


def _resid(model, texts, layer):
    return metalens.capture(model, texts, [resid_post(layer)], positions="mean", progress=False, dtype=torch.float32)[resid_post(layer)]


def test_mean_diff_equals_difference_of_mean_activations(tiny_gemma):
    vec = train_steering_vector(tiny_gemma, POS, NEG, layers=[1])
    expected = _resid(tiny_gemma, POS, 1).mean(0) - _resid(tiny_gemma, NEG, 1).mean(0)
    torch.testing.assert_close(vec.directions[1], expected)


def test_residual_scaled_directions_are_as_long_as_the_mean_residual_and_keep_their_sign(tiny_gemma):
    vec = train_steering_vector(tiny_gemma, POS, NEG, layers=[1, 2])
    scaled = vec.residual_scaled()
    for layer in (1, 2):
        acts = _resid(tiny_gemma, POS + NEG, layer)  # the same positions the vector was read at
        expected_norm = acts.norm(dim=-1).mean()
        assert math.isclose(float(scaled.directions[layer].norm()), float(expected_norm), rel_tol=1e-4)
        cos = torch.nn.functional.cosine_similarity(scaled.directions[layer], vec.directions[layer], dim=0)
        assert float(cos) > 0.9999
        assert math.isclose(scaled.metadata["raw_norm"][str(layer)], float(vec.directions[layer].norm()), rel_tol=1e-6)
    assert scaled.metadata["unit"] == "residual" and "unit" not in vec.metadata  # the original is untouched


def test_residual_scaling_without_recorded_norms_names_the_fix(tiny_gemma):
    vec = train_steering_vector(tiny_gemma, POS, NEG, layers=[1])
    bare = SteeringVector(**{**vec.__dict__, "metadata": {}})
    with pytest.raises(ValueError, match="train_steering_vector"):
        bare.residual_scaled()


def test_strength_one_moves_negative_mean_onto_positive_mean_at_that_layer(tiny_gemma):
    # Steering at block 1's output shifts that site by exactly the vector, so mean(neg) + v = mean(pos).
    vec = train_steering_vector(tiny_gemma, POS, NEG, layers=[1])
    with vec.apply(tiny_gemma, strength=1.0):
        steered = _resid(tiny_gemma, NEG, 1).mean(0)
    torch.testing.assert_close(steered, _resid(tiny_gemma, POS, 1).mean(0), atol=1e-4, rtol=1e-4)


def test_pca_recovers_planted_direction_with_mean_diff_norm(tiny_gemma, monkeypatch):
    d = tiny_gemma.d_model
    planted = torch.zeros(d)
    planted[3] = 1.0
    gen = torch.Generator().manual_seed(0)
    scales = torch.rand(8, generator=gen) + 0.5
    neg = torch.randn(8, d, generator=gen)
    pos = neg + scales[:, None] * planted * 5 + 0.01 * torch.randn(8, d, generator=gen)

    def fake_capture(model, texts, sites, **kw):
        return {sites[0]: pos if texts[0].startswith("p") else neg}

    monkeypatch.setattr(metalens, "capture", fake_capture)
    vec = train_steering_vector(tiny_gemma, [f"p{i}" for i in range(8)], [f"n{i}" for i in range(8)], layers=[0], method="pca")
    direction = vec.directions[0]
    mean_diff = pos.mean(0) - neg.mean(0)
    assert torch.nn.functional.cosine_similarity(direction, planted, dim=0) > 0.99
    assert math.isclose(direction.norm().item(), mean_diff.norm().item(), rel_tol=1e-5)


def test_apply_changes_logits_and_removes_hooks_even_on_error(tiny_gemma):
    vec = train_steering_vector(tiny_gemma, POS, NEG, layers=[0, 2])
    batch = tiny_gemma.tokenize(["hello"])
    before = tiny_gemma.hf(**batch).logits
    with vec.apply(tiny_gemma, strength=5.0):
        during = tiny_gemma.hf(**batch).logits
    with pytest.raises(RuntimeError):
        with vec.apply(tiny_gemma, strength=5.0):
            raise RuntimeError("boom")
    after = tiny_gemma.hf(**batch).logits
    assert not torch.allclose(before, during)
    torch.testing.assert_close(before, after)


def test_strength_zero_leaves_logits_unchanged(tiny_gemma):
    vec = train_steering_vector(tiny_gemma, POS, NEG, layers=[1])
    batch = tiny_gemma.tokenize(["hello"])
    before = tiny_gemma.hf(**batch).logits
    with vec.apply(tiny_gemma, strength=0.0):
        torch.testing.assert_close(tiny_gemma.hf(**batch).logits, before)


def test_save_load_round_trips_directions_and_metadata(tiny_gemma, tmp_path):
    vec = train_steering_vector(tiny_gemma, POS, NEG, layers=[0, 2], method="pca", seed=7)
    path = vec.save(tmp_path / "ocean")
    back = SteeringVector.load(path)
    assert back.layers == [0, 2] and back.method == "pca" and back.seed == 7
    assert back.model_name == tiny_gemma.name and back.revision == tiny_gemma.revision
    for layer in vec.layers:
        torch.testing.assert_close(back.directions[layer], vec.directions[layer])


def test_saved_vector_records_its_artifact_format(tiny_gemma, tmp_path):
    train_steering_vector(tiny_gemma, POS, NEG, layers=[1]).save(tmp_path / "v")
    meta = json.loads((tmp_path / "v" / "steering_vector.json").read_text())
    assert meta["format"] == {"name": "steering_vector", "version": 1} and meta["layers"] == [1]
    assert (tmp_path / "v" / "steering_vector.safetensors").exists()


def test_vector_saved_in_the_old_file_pair_layout_still_loads(tmp_path):
    # Before metalens.artifact: ocean.safetensors ("layer.L" tensors) + ocean.json, no format record.
    direction = torch.arange(4.0)
    save_file({"layer.2": direction}, str(tmp_path / "ocean.safetensors"))
    (tmp_path / "ocean.json").write_text(json.dumps({"model_name": "m", "d_model": 4, "method": "mean_diff",
                                                     "positions": "mean", "revision": "main", "seed": 3,
                                                     "n_pairs": 16, "metadata": {}, "layers": [2]}))
    back = SteeringVector.load(tmp_path / "ocean.safetensors")
    assert back.layers == [2] and back.seed == 3 and back.model_name == "m"
    torch.testing.assert_close(back.directions[2], direction)


def test_loading_a_missing_vector_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="SteeringVector.save"):
        SteeringVector.load(tmp_path / "nothing")


@pytest.mark.parametrize("pos,neg,match", [([], [], "No contrastive pairs"), (POS, [], "One-sided"),
                                           ([], NEG, "One-sided")])
def test_empty_or_one_sided_pairs_raise(tiny_gemma, pos, neg, match):
    with pytest.raises(ValueError, match=match):
        train_steering_vector(tiny_gemma, pos, neg)


def test_pca_with_unpaired_texts_raises(tiny_gemma):
    with pytest.raises(ValueError, match="as many positives as negatives"):
        train_steering_vector(tiny_gemma, POS, NEG[:2], method="pca")


def test_layer_out_of_range_raises(tiny_gemma):
    with pytest.raises(ValueError, match="out of range.*blocks 0-2"):
        train_steering_vector(tiny_gemma, POS, NEG, layers=[3])


def test_vector_from_other_model_is_refused(tiny_gemma, tiny_llama):
    vec = train_steering_vector(tiny_llama, POS, NEG, layers=[0])
    with pytest.raises(ValueError, match="trained on 'tiny-llama'"):
        with vec.apply(tiny_gemma, strength=1.0):
            pass
    wide = SteeringVector({0: torch.zeros(128)}, model_name=tiny_gemma.name, d_model=128)
    with pytest.raises(ValueError, match="d_model 128"):
        metalens.steering.generate(tiny_gemma, ["hi"], wide, max_new_tokens=2)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_strength_is_refused(tiny_gemma, bad):
    vec = train_steering_vector(tiny_gemma, POS, NEG, layers=[0])
    with pytest.raises(ValueError, match="strength must be finite"):
        with vec.apply(tiny_gemma, strength=bad):
            pass
    with pytest.raises(ValueError, match="strength must be finite"):
        metalens.steering.generate(tiny_gemma, ["hi"], vec, strength=bad, max_new_tokens=2)

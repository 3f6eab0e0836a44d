"""FeatureSteer: add and clamp one SAE feature during forward passes and steered generation."""
from __future__ import annotations

import warnings

import pytest
import torch

import metalens
from metalens.sae import SAE
from metalens.steering import FeatureSteer, SteeringVector, feature_stats, generate

SITE = "blocks.1.hook_resid_post"
TEXTS = ["the sea is calm", "waves on the shore tonight", "a pen on paper"]
D = 64  # tiny models' d_model


def random_sae(d_sae: int = 32, seed: int = 0, site: str = SITE, **kw) -> SAE:
    gen = torch.Generator().manual_seed(seed)
    return SAE(W_enc=torch.randn(D, d_sae, generator=gen) / D**0.5, W_dec=torch.randn(d_sae, D, generator=gen),
               b_enc=0.1 * torch.randn(d_sae, generator=gen), b_dec=torch.randn(D, generator=gen), site=site, **kw)


def constant_feature_sae(feature: int, value: float) -> SAE:
    """A lossy random SAE whose `feature` reads nothing: its activation is `value` at every token."""
    sae = random_sae()
    sae.W_enc[:, feature] = 0.0
    sae.b_enc[feature] = value
    return sae


def logits(model, texts=TEXTS, edits=None) -> torch.Tensor:
    batch = model.tokenize(texts)
    return metalens.run_with_cache(model, batch["input_ids"], batch["attention_mask"], edits=edits, logits=True).logits


def test_clamping_a_feature_to_its_current_value_leaves_logits_bit_identical(tiny_gemma):
    # The SAE reconstructs badly, so replacing the activation by its reconstruction would change the logits:
    # only a clamp that keeps the reconstruction error in place leaves them exactly as they were.
    sae = constant_feature_sae(feature=5, value=0.75)
    plain = logits(tiny_gemma)
    assert not torch.allclose(logits(tiny_gemma, edits={SITE: sae.splice}), plain)
    clamped = logits(tiny_gemma, edits=FeatureSteer(sae, 5, "clamp").edits(tiny_gemma, 0.75))
    assert torch.equal(clamped, plain)


def test_clamping_a_silent_feature_to_zero_leaves_generation_identical(tiny_gemma):
    sae = random_sae()
    sae.b_enc[3] = -1e4  # never fires
    steer = FeatureSteer(sae, 3, "clamp")
    assert generate(tiny_gemma, TEXTS, steer, strength=0.0, max_new_tokens=6) == \
        generate(tiny_gemma, TEXTS, None, max_new_tokens=6)


def test_add_with_strength_zero_leaves_logits_bit_identical(tiny_gemma):
    steer = FeatureSteer(random_sae(), 7, "add", scale=3.0)
    assert torch.equal(logits(tiny_gemma, edits=steer.edits(tiny_gemma, 0.0)), logits(tiny_gemma))


def test_add_equals_a_steering_vector_along_the_decoder_direction(tiny_gemma):
    sae = random_sae()
    steer = FeatureSteer(sae, 7, "add", scale=2.0)
    vector = SteeringVector({1: sae.W_dec[7].clone()}, model_name=tiny_gemma.name, d_model=D)
    by_feature = logits(tiny_gemma, edits=steer.edits(tiny_gemma, 1.5))
    assert torch.equal(by_feature, logits(tiny_gemma, edits=vector.edits(tiny_gemma, 3.0)))
    assert not torch.allclose(by_feature, logits(tiny_gemma))
    assert generate(tiny_gemma, TEXTS, steer, strength=1.5, max_new_tokens=6) == \
        generate(tiny_gemma, TEXTS, vector, strength=3.0, max_new_tokens=6)
    assert torch.equal(steer.as_vector(tiny_gemma).directions[1], vector.directions[1] * 2.0)


def test_clamp_sets_the_re_encoded_feature_to_the_clamped_value(tiny_gemma):
    # Feature 4 reads coordinate 4 with a bias that keeps it above zero, and writes coordinate 4 back: after
    # the clamp the site holds h_4 + (v - f_4), so re-encoding gives v, exact up to float rounding.
    sae = SAE(W_enc=torch.eye(D), W_dec=torch.eye(D), b_enc=torch.full((D,), 50.0), b_dec=torch.zeros(D), site=SITE)
    before = metalens.capture(tiny_gemma, TEXTS, ["blocks.2.hook_resid_pre"], positions="all", progress=False,
                              dtype=torch.float32)["blocks.2.hook_resid_pre"]
    assert (sae.encode(before)[:, 4] > 0).all()  # the ReLU is never at zero here: the case is exact
    with FeatureSteer(sae, 4, "clamp").apply(tiny_gemma, 60.0):
        after = metalens.capture(tiny_gemma, TEXTS, ["blocks.2.hook_resid_pre"], positions="all", progress=False,
                                 dtype=torch.float32)["blocks.2.hook_resid_pre"]  # block 1's output, steered
    f = sae.encode(after)
    torch.testing.assert_close(f[:, 4], torch.full_like(f[:, 4], 60.0), atol=1e-4, rtol=0)
    torch.testing.assert_close(after[:, 5:], before[:, 5:])  # other coordinates untouched
    assert not torch.allclose(before[:, 4], after[:, 4])


def test_clamp_moves_the_stream_by_the_value_change_times_the_decoder_row(tiny_gemma):
    sae = random_sae()
    plain = metalens.capture(tiny_gemma, TEXTS, ["blocks.2.hook_resid_pre"], positions="all", progress=False,
                             dtype=torch.float32)["blocks.2.hook_resid_pre"]
    with FeatureSteer(sae, 9, "clamp", scale=2.0).apply(tiny_gemma, 5.0):
        steered = metalens.capture(tiny_gemma, TEXTS, ["blocks.2.hook_resid_pre"], positions="all",
                                   progress=False, dtype=torch.float32)["blocks.2.hook_resid_pre"]
    expected = plain + (10.0 - sae.encode(plain)[:, 9:10]) * sae.W_dec[9]
    torch.testing.assert_close(steered, expected, atol=1e-4, rtol=1e-5)


def test_apply_removes_its_hooks_even_when_the_forward_fails(tiny_gemma):
    steer = FeatureSteer(random_sae(), 2, "clamp")
    plain = logits(tiny_gemma)
    with pytest.raises(RuntimeError, match="boom"):
        with steer.apply(tiny_gemma, 10.0):
            raise RuntimeError("boom")
    assert torch.equal(logits(tiny_gemma), plain)


def test_a_feature_out_of_range_is_refused_naming_the_range():
    with pytest.raises(ValueError, match="features 0-31"):
        FeatureSteer(random_sae(), 32)


def test_an_sae_for_another_site_or_width_is_refused_and_another_model_name_warned(tiny_gemma):
    with pytest.raises(ValueError, match="Valid site names"):
        FeatureSteer(random_sae(site="blocks.9.hook_resid_post"), 0).edits(tiny_gemma)
    wide = SAE(W_enc=torch.zeros(128, 4), W_dec=torch.zeros(4, 128), b_enc=torch.zeros(4), b_dec=torch.zeros(128),
               site=SITE)
    with pytest.raises(ValueError, match="width 64 .* d_in is 128"):
        FeatureSteer(wide, 0).edits(tiny_gemma)
    with pytest.warns(UserWarning, match="names its model 'gemma-3-270m', not 'tiny-gemma3'"):
        FeatureSteer(random_sae(model="gemma-3-270m"), 0).edits(tiny_gemma)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the hub org and a released variant's suffix are the same model
        FeatureSteer(random_sae(model="google/TINY-gemma3-pt"), 0).edits(tiny_gemma)


def test_feature_stats_contrast_finds_a_feature_planted_on_the_positive_texts(tiny_gemma):
    pos, neg = ["the sea is calm", "a ship at sea"], ["a pen on paper", "office chairs"]
    resid = metalens.capture(tiny_gemma, pos + neg, [SITE], positions="mean", progress=False, dtype=torch.float32)[SITE]
    planted = resid[:2].mean(0) - resid[2:].mean(0)  # reads the positive-minus-negative direction
    sae = random_sae()
    sae.W_enc[:, 11] = planted / planted.norm() * 10
    sae.b_enc[11] = 0.0
    stats = feature_stats(tiny_gemma, sae, pos, neg)
    assert int(stats.contrast.argmax()) == 11
    assert stats.max_positive[11] >= stats.mean_positive[11] > 0

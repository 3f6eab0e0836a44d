"""`run_steer_ab` / `metalens steer-ab --sae`: A/B propensity along one SAE feature's decoder row."""
from __future__ import annotations

import json

import pytest
import torch

import metalens
from cli_checks import refused
from metalens.sae import SAE, save_saelens
from metalens.steering import SteerABConfig, run_steer_ab
from metalens.steering.ab.items import caa_pairs, read_ab

from test_steering_ab import write_items

SITE = "blocks.1.hook_resid_post"
LETTERS = "AABABBABABAB"


def planted_sae(model, data, feature: int = 5, d_sae: int = 24) -> SAE:
    """A random SAE at block 1 whose `feature` reads the matching-minus-other difference at the answer letter."""
    positive, negative = caa_pairs(model, read_ab(data))
    acts = metalens.capture(model, positive + negative, [SITE], positions="last", progress=False,
                            dtype=torch.float32)[SITE]
    diff = acts[:len(positive)].mean(0) - acts[len(positive):].mean(0)
    gen = torch.Generator().manual_seed(1)
    sae = SAE(W_enc=torch.randn(64, d_sae, generator=gen) / 8, W_dec=torch.randn(d_sae, 64, generator=gen),
              b_enc=torch.zeros(d_sae), b_dec=torch.zeros(64), site=SITE, model=model.name)
    sae.W_enc[:, feature] = diff / diff.norm() * 10
    return sae


@pytest.mark.parametrize("unit", ["residual", "raw"])
def test_steer_ab_by_a_feature_steers_along_its_decoder_row_at_the_sae_block(tiny_llama, tmp_path, unit):
    data = write_items(tmp_path / "d.jsonl", LETTERS)
    sae = planted_sae(tiny_llama, data)
    folder = save_saelens(sae, tmp_path / "sae")
    config = SteerABConfig(str(data), strengths=(-1, 1), open_items=0, unit=unit, sae=str(folder))
    result = run_steer_ab(tiny_llama, config, out=tmp_path / "out", progress=False)
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["sae_feature"]["sae_feature"] == 5 and saved["sae_feature"]["ranking"][0]["feature"] == 5
    assert result.vector.layers == [1] and set(saved["steerability"]) == {"1"}
    direction = result.vector.directions[1]
    assert torch.nn.functional.cosine_similarity(direction, sae.W_dec[5], dim=0) > 0.9999
    if unit == "residual":  # as long as the layer's mean residual norm, as a CAA vector in this unit
        assert float(direction.norm()) == pytest.approx(result.vector.metadata["resid_norm"]["1"], rel=1e-4)
    else:  # strength 1 = the feature's largest activation on a matching-answer text
        torch.testing.assert_close(direction, sae.W_dec[5] * saved["sae_feature"]["scale"])


def test_steer_ab_refuses_layers_beside_an_sae(tmp_path):
    with pytest.raises(ValueError, match="drop layers"):
        SteerABConfig(str(tmp_path / "d.jsonl"), layers=[1], sae=str(tmp_path))


def test_the_steer_ab_verb_refuses_a_feature_out_of_range_or_without_an_sae(tiny_llama, tmp_path, capsys, no_model):
    data = write_items(tmp_path / "d.jsonl", LETTERS)
    folder = save_saelens(SAE(W_enc=torch.zeros(64, 24), W_dec=torch.zeros(24, 64), b_enc=torch.zeros(24),
                              b_dec=torch.zeros(64), site=SITE), tmp_path / "sae")
    base = ["steer-ab", "--data", str(data), "--out", str(tmp_path / "out")]
    assert "features 0-23" in refused([*base, "--sae", str(folder), "--feature", "24"], capsys)
    assert "add --sae" in refused([*base, "--feature", "3"], capsys)
    assert "drop layers" in refused([*base, "--sae", str(folder), "--layers", "1"], capsys)
    assert not (tmp_path / "out").exists()

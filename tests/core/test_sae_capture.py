"""SAE features through `capture`, the `hook_mlp_in` site, and transcoders spliced into the forward pass."""
from __future__ import annotations

import pytest
import torch

import metalens
from metalens.capture import feature_keys
from metalens.sae import SAE, evaluate_sae, splice_edits

TEXTS = ["The cat sat on the mat.", "A quick brown fox jumps.", "Hello there, how are you?", "Numbers 1 2 3 4."]
SITE = "blocks.1.hook_resid_post"


def random_sae(d_in=64, d_sae=32, seed=0, site=SITE, **kw) -> SAE:
    gen = torch.Generator().manual_seed(seed)
    return SAE(W_enc=torch.randn(d_in, d_sae, generator=gen) / 8, W_dec=torch.randn(d_sae, kw.pop("d_out", d_in), generator=gen),
               b_enc=torch.randn(d_sae, generator=gen) / 8, b_dec=torch.zeros(kw.pop("d_b", d_in)), site=site, **kw)


# --- capture with an SAE

@pytest.mark.parametrize("positions", ["all", "last"])
def test_captured_features_equal_encoding_the_captured_site(tiny_gemma, positions):
    sae = random_sae()
    acts = metalens.capture(tiny_gemma, TEXTS, [SITE], positions=positions, batch_size=2, progress=False, sae=sae)
    torch.testing.assert_close(acts[f"{SITE}.features"], sae.encode(acts[SITE]))
    assert acts.metadata["features"] == [f"{SITE}.features"]


def test_features_alone_leave_the_site_out(tiny_gemma):
    sae = random_sae()
    acts = metalens.capture(tiny_gemma, TEXTS, [], positions="all", batch_size=3, progress=False, sae=sae)
    plain = metalens.capture(tiny_gemma, TEXTS, [SITE], positions="all", progress=False)
    assert acts.sites == [f"{SITE}.features"]
    torch.testing.assert_close(acts[f"{SITE}.features"], sae.encode(plain[SITE]))


def test_top_k_features_are_each_tokens_largest(tiny_gemma):
    sae = random_sae()
    acts = metalens.capture(tiny_gemma, TEXTS, [SITE], positions="all", progress=False, sae=sae, feature_top_k=3)
    index_key, value_key = feature_keys(sae, 3)
    dense = sae.encode(acts[SITE])
    top = dense.topk(3, dim=-1)
    assert acts[index_key].dtype == torch.int64 and acts[index_key].shape == (len(dense), 3)
    torch.testing.assert_close(acts[value_key], top.values)
    torch.testing.assert_close(dense.gather(-1, acts[index_key]), top.values)


def test_feature_capture_streams_to_shards_and_resumes(tiny_gemma, tmp_path):
    sae = random_sae()
    out = tmp_path / "features"
    metalens.capture(tiny_gemma, TEXTS, [], positions="all", batch_size=2, out=out, progress=False, sae=sae,
                     feature_top_k=4)
    again = metalens.capture(tiny_gemma, TEXTS, [], positions="all", batch_size=2, out=out, progress=False, sae=sae,
                             feature_top_k=4)
    stored = metalens.load_activations(again)
    direct = metalens.capture(tiny_gemma, TEXTS, [], positions="all", progress=False, sae=sae, feature_top_k=4)
    for key in feature_keys(sae, 4):
        torch.testing.assert_close(stored[key], direct[key])
    with pytest.raises(ValueError):  # another dictionary is another capture: not mixed into these shards
        metalens.capture(tiny_gemma, TEXTS, [], positions="all", batch_size=2, out=out, progress=False,
                         sae=random_sae(seed=1), feature_top_k=4)


def test_feature_capture_refuses_a_wrong_width_or_a_top_k_of_means(tiny_gemma):
    with pytest.raises(ValueError, match="width 64, the SAE's d_in is 32"):
        metalens.capture(tiny_gemma, TEXTS, [], progress=False, sae=random_sae(d_in=32))
    with pytest.raises(ValueError, match="positions='all' or 'last'"):
        metalens.capture(tiny_gemma, TEXTS, [], positions="mean", progress=False, sae=random_sae(), feature_top_k=2)
    with pytest.raises(ValueError, match="feature_top_k must be an integer in 1..32"):
        metalens.capture(tiny_gemma, TEXTS, [], progress=False, sae=random_sae(), feature_top_k=33)


# --- hook_mlp_in

@pytest.mark.parametrize("fixture", ["tiny_gemma", "tiny_llama"])
def test_mlp_in_matches_the_transformerlens_bridge_mlp_input(fixture, request):
    model = request.getfixturevalue(fixture)
    ours = metalens.capture(model, ["hello world"], ["blocks.1.hook_mlp_in"], positions="all", progress=False)
    _, cache = model.bridge.run_with_cache("hello world")
    torch.testing.assert_close(ours["blocks.1.hook_mlp_in"], cache["blocks.1.mlp.hook_in"][0], atol=1e-5, rtol=1e-4)


def test_mlp_in_past_the_last_block_names_the_valid_sites(tiny_gemma):
    with pytest.raises(ValueError, match=r"Unknown site 'blocks.7.hook_mlp_in'.*hook_mlp_in"):
        metalens.resolve_site(tiny_gemma, "blocks.7.hook_mlp_in")


# --- transcoders

def transcoder(layer=1, **kw) -> SAE:
    return random_sae(site=f"blocks.{layer}.hook_mlp_in", out_site=f"blocks.{layer}.hook_mlp_out", **kw)


def test_transcoder_splice_writes_its_prediction_from_mlp_in_into_mlp_out(tiny_gemma):
    sae = transcoder(W_skip=torch.randn(64, 64) / 8)
    ids = tiny_gemma.tokenize(TEXTS[:2])["input_ids"]
    plain = metalens.run_with_cache(tiny_gemma, ids, sites=[sae.site], logits=True)
    predicted = sae.forward(plain[sae.site])  # [batch, pos, d_model]
    by_hand = metalens.run_with_cache(tiny_gemma, ids, edits={sae.out_site: lambda a: predicted.to(a.dtype)},
                                      logits=True).logits
    spliced = metalens.run_with_cache(tiny_gemma, ids, edits=splice_edits(sae), logits=True).logits
    torch.testing.assert_close(spliced, by_hand)
    assert not torch.allclose(spliced, plain.logits)


def test_transcoder_is_scored_against_the_mlp_output(tiny_gemma):
    result = evaluate_sae(tiny_gemma, transcoder(), TEXTS, batch_size=2)
    assert result.site == "blocks.1.hook_mlp_out"
    assert torch.isfinite(torch.tensor([result.ce_recovered_zero, result.ce_recovered_mean])).all()

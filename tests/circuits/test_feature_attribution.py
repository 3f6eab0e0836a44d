"""Attribution patching over SAE features: the spliced forward, attribution vs exact patching, bad inputs."""
from __future__ import annotations

import pytest
import torch

from metalens.circuits import ContrastTask
from metalens.circuits.feature_attribution import attribute_features, feature_run, patch_features_exact, patch_site_exact
from metalens.circuits.heads import spearman
from metalens.circuits.metrics import last_logits, prepare
from metalens.circuits.tasks import induction_task
from metalens.sae import SAE
from metalens.testing import tiny_model

SITE = "blocks.1.hook_resid_post"


def random_sae(d_in=64, d_sae=32, seed=0, site=SITE, **kw) -> SAE:
    gen = torch.Generator().manual_seed(seed)
    return SAE(W_enc=torch.randn(d_in, d_sae, generator=gen) / 4, W_dec=torch.randn(d_sae, kw.pop("d_out", d_in), generator=gen) / 4,
               b_enc=torch.randn(d_sae, generator=gen) / 8, b_dec=torch.zeros(kw.pop("d_b", d_in)), site=site, **kw)


def identity_sae(d=64, site=SITE) -> SAE:
    """relu(x) - relu(-x) = x: features [x+, x-], a reconstruction with no error."""
    eye = torch.eye(d)
    return SAE(W_enc=torch.cat([eye, -eye], 1), W_dec=torch.cat([eye, -eye], 0), b_enc=torch.zeros(2 * d),
               b_dec=torch.zeros(d), site=site)


@pytest.fixture(scope="module")
def linear_model():
    """One llama block whose logits are linear in its output: final RMSNorm made linear by a huge eps."""
    model = tiny_model("llama", n_layers=1)
    model.hf.double()
    model.hf.model.norm.variance_epsilon = 1e10  # rsqrt(mean(x^2) + eps) ~ constant
    return model


@pytest.mark.parametrize("make", [identity_sae, random_sae])
def test_spliced_forward_equals_the_plain_one(tiny_gemma, make):
    task = induction_task(tiny_gemma.tokenizer, n=3)
    batch = prepare(tiny_gemma, task)
    sae = make()
    logits, store = feature_run(tiny_gemma, batch, sae, batch.clean_ids)
    torch.testing.assert_close(logits, last_logits(tiny_gemma, batch), rtol=1e-5, atol=1e-5)
    assert store["f"].shape == (*batch.clean_ids.shape, sae.d_sae)


def test_a_per_head_site_splices_in_flattened_and_back(tiny_gemma):
    sae = random_sae(site="blocks.1.attn.hook_z")  # [batch, pos, 4 heads, 16] read as 64 wide
    task = induction_task(tiny_gemma.tokenizer, n=3)
    batch = prepare(tiny_gemma, task)
    logits, _ = feature_run(tiny_gemma, batch, sae, batch.clean_ids)
    torch.testing.assert_close(logits, last_logits(tiny_gemma, batch), rtol=1e-5, atol=1e-5)
    scored = attribute_features(tiny_gemma, task, sae, "ig", steps=8)
    total = patch_site_exact(tiny_gemma, task, sae)
    torch.testing.assert_close(scored.scores.sum(1) + scored.error, total, rtol=1e-2, atol=1e-2 * float(total.abs().max()))


def test_identity_sae_leaves_no_error_term(tiny_gemma):
    task = induction_task(tiny_gemma.tokenizer, n=3)
    batch = prepare(tiny_gemma, task)
    sae = identity_sae()
    # writing decode(f) alone (no error term) is the plain forward when the SAE is exact
    logits, _ = feature_run(tiny_gemma, batch, sae, batch.clean_ids, replace=lambda f: f)
    no_error = last_logits(tiny_gemma, batch, edits={SITE: sae.splice})
    torch.testing.assert_close(logits, no_error, rtol=1e-5, atol=1e-5)


def test_attribution_equals_exact_patching_when_the_metric_is_linear_in_the_site(linear_model):
    sae = random_sae(site="blocks.0.hook_resid_post")
    task = induction_task(linear_model.tokenizer, n=4)
    scored = attribute_features(linear_model, task, sae)
    scores = scored.scores
    moved = (scored.f_clean - scored.f_corrupted).abs().sum(0).nonzero().flatten().tolist()
    assert len(moved) > 5
    exact = patch_features_exact(linear_model, task, sae, moved)
    assert exact.abs().max() > 0
    torch.testing.assert_close(scores[:, moved], exact, rtol=1e-4, atol=1e-4 * float(exact.abs().max()))
    total = patch_site_exact(linear_model, task, sae)  # linear: features + error share the whole effect exactly
    torch.testing.assert_close(scores.sum(1) + scored.error, total, rtol=1e-4, atol=1e-4 * float(total.abs().max()))


def test_integrated_gradients_share_out_the_whole_sites_effect_where_the_gradient_does_not(tiny_gemma):
    sae = random_sae()
    task = induction_task(tiny_gemma.tokenizer, n=4)
    total = patch_site_exact(tiny_gemma, task, sae)
    ig = attribute_features(tiny_gemma, task, sae, "ig", steps=24)
    plain = attribute_features(tiny_gemma, task, sae)
    gap = lambda s: float((s.scores.sum(1) + s.error - total).abs().max())
    assert gap(ig) < 0.01 * float(total.abs().max())
    assert gap(plain) > 2 * gap(ig)  # one gradient misses the curvature that the path integral follows


def test_an_exact_sae_leaves_the_error_term_nothing(tiny_gemma):
    task = induction_task(tiny_gemma.tokenizer, n=3)
    for method in ("attribution", "ig"):
        scored = attribute_features(tiny_gemma, task, identity_sae(), method, steps=2)
        assert scored.error.abs().max() < 1e-6 * float(scored.scores.abs().max())
        assert scored.scores.abs().max() > 0


def test_attribution_ranks_features_like_exact_patching_on_a_random_model(tiny_gemma):
    sae = random_sae()
    task = induction_task(tiny_gemma.tokenizer, n=6)
    scores = attribute_features(tiny_gemma, task, sae).scores
    top = scores.mean(0).abs().topk(8).indices.tolist()
    exact = patch_features_exact(tiny_gemma, task, sae, top)
    assert torch.sign(exact.mean(0)[0]) == torch.sign(scores.mean(0)[top[0]])
    assert spearman(scores.mean(0)[top], exact.mean(0)) > 0.5


def test_features_the_prompts_do_not_move_score_zero(tiny_gemma):
    text = ["abcdefabc", "xyzuvwxyz"]
    task = ContrastTask("same", text, text, ["d", "u"], ["e", "v"])
    for method in ("attribution", "ig"):
        scored = attribute_features(tiny_gemma, task, random_sae(), method, steps=2)
        assert scored.scores.abs().max() == 0 and scored.error.abs().max() == 0
    assert patch_features_exact(tiny_gemma, task, random_sae(), [0, 1, 2]).abs().max() == 0


def test_a_transcoder_splices_in_without_changing_the_forward(tiny_gemma):
    tc = random_sae(site="blocks.1.hook_mlp_in", out_site="blocks.1.hook_mlp_out")
    task = induction_task(tiny_gemma.tokenizer, n=2)
    batch = prepare(tiny_gemma, task)
    logits, _ = feature_run(tiny_gemma, batch, tc, batch.clean_ids)
    torch.testing.assert_close(logits, last_logits(tiny_gemma, batch), rtol=1e-5, atol=1e-5)
    assert attribute_features(tiny_gemma, task, tc).scores.abs().max() > 0


@pytest.mark.parametrize("sae, match", [
    (random_sae(d_in=32), "width 64, the SAE's d_in is 32"),
    (random_sae(site="blocks.7.hook_resid_post"), "Unknown site"),
    (random_sae(site="blocks.1.attn.hook_k"), "width 16, the SAE's d_in is 64"),  # one kv head of 16
])
def test_an_sae_that_does_not_fit_the_model_is_refused(tiny_gemma, sae, match):
    task = induction_task(tiny_gemma.tokenizer, n=2)
    with pytest.raises(ValueError, match=match):
        attribute_features(tiny_gemma, task, sae)


def test_unknown_method_is_refused(tiny_gemma):
    with pytest.raises(ValueError, match="Unknown method"):
        attribute_features(tiny_gemma, induction_task(tiny_gemma.tokenizer, n=2), random_sae(), "gradient")


def test_kl_metric_is_refused_with_the_reason(tiny_gemma):
    task = induction_task(tiny_gemma.tokenizer, n=2, metric="kl")
    with pytest.raises(ValueError, match="zero gradient"):
        attribute_features(tiny_gemma, task, random_sae())

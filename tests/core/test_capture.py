"""capture(): positions, padding, batch-size independence, site validation, early stop."""
import pytest
import torch

import metalens
from metalens.hooks import StopForward

TEXTS = ["the cat sat", "a much longer sentence about dogs and cats", "hi", "numbers 1 2 3 4"]
SITE = "blocks.1.hook_resid_post"


def _alone(model, text, site=SITE):
    """Full-sequence activation of one text, no padding anywhere: [pos, ...]."""
    return metalens.capture(model, [text], [site], positions="all", progress=False)[site]


@pytest.mark.parametrize("arch", ["tiny_gemma", "tiny_llama"])
def test_last_is_each_texts_own_last_token_despite_padding(arch, request):
    model = request.getfixturevalue(arch)
    acts = metalens.capture(model, TEXTS, [SITE], positions="last", batch_size=4, progress=False)
    for i, text in enumerate(TEXTS):
        torch.testing.assert_close(acts[SITE][i], _alone(model, text)[-1], atol=1e-5, rtol=1e-4)


def test_mean_excludes_padding_and_bos(tiny_gemma):
    acts = metalens.capture(tiny_gemma, TEXTS, [SITE], positions="mean", batch_size=4, progress=False)
    for i, text in enumerate(TEXTS):
        torch.testing.assert_close(acts[SITE][i], _alone(tiny_gemma, text)[1:].mean(0), atol=1e-5, rtol=1e-4)


def test_all_positions_split_back_into_texts(tiny_gemma):
    acts = metalens.capture(tiny_gemma, TEXTS, [SITE], positions="all", batch_size=3, progress=False)
    pieces = acts.split(SITE)
    assert [len(p) for p in pieces] == acts.token_counts.tolist()
    for piece, text in zip(pieces, TEXTS):
        torch.testing.assert_close(piece, _alone(tiny_gemma, text), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("positions", ["last", "mean", "all"])
def test_results_do_not_depend_on_batch_size(tiny_llama, positions):
    sites = [SITE, "blocks.0.attn.hook_z"]
    one = metalens.capture(tiny_llama, TEXTS, sites, positions=positions, batch_size=1, progress=False)
    many = metalens.capture(tiny_llama, TEXTS, sites, positions=positions, batch_size=3, progress=False)
    for site in sites:
        torch.testing.assert_close(one[site], many[site], atol=1e-5, rtol=1e-4)


def test_per_head_sites_have_head_axis(tiny_gemma):
    acts = metalens.capture(tiny_gemma, TEXTS, ["blocks.2.attn.hook_z"], progress=False)
    assert acts["blocks.2.attn.hook_z"].shape == (len(TEXTS), tiny_gemma.n_heads, tiny_gemma.d_head)


def test_bad_site_names_valid_ones(tiny_gemma):
    with pytest.raises(ValueError, match=r"blocks 0-2.*Valid site names: blocks\.\{0\.\.2\}"):
        metalens.capture(tiny_gemma, TEXTS, ["blocks.40.hook_resid_post"], progress=False)
    with pytest.raises(ValueError, match="not a block hook"):
        metalens.capture(tiny_gemma, TEXTS, ["blocks.1.hook_resid_psot"], progress=False)


@pytest.mark.parametrize("texts, error", [([], ValueError), ("one string", TypeError), ([1, 2], TypeError)])
def test_bad_texts_are_rejected(tiny_gemma, texts, error):
    with pytest.raises(error):
        metalens.capture(tiny_gemma, texts, [SITE], progress=False)


def test_forward_stops_after_deepest_site(tiny_gemma):
    ran = []
    handles = [layer.register_forward_hook(lambda m, a, o, i=i: ran.append(i)) for i, layer in enumerate(tiny_gemma.layers)]
    try:
        metalens.capture(tiny_gemma, TEXTS[:1], ["blocks.0.hook_resid_post"], progress=False)
    finally:
        for h in handles:
            h.remove()
    assert ran == [0]


def test_hooks_are_removed_even_when_the_forward_fails(tiny_gemma):
    batch = tiny_gemma.tokenize(["abc"])

    def boom(act):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        with metalens.hooks(tiny_gemma, {SITE: boom}):
            tiny_gemma.hf(**batch)
    assert all(not layer._forward_hooks for layer in tiny_gemma.layers)
    tiny_gemma.hf(**batch)  # no stale hook raises


def test_hook_that_returns_a_tensor_edits_the_forward(tiny_gemma):
    batch = tiny_gemma.tokenize(["abc"])
    clean = tiny_gemma.hf(**batch).logits
    with metalens.hooks(tiny_gemma, {"blocks.1.attn.hook_z": lambda z: torch.zeros_like(z)}):
        zeroed = tiny_gemma.hf(**batch).logits
    with metalens.hooks(tiny_gemma, {"blocks.1.attn.hook_z": lambda z: None}):
        untouched = tiny_gemma.hf(**batch).logits
    assert not torch.allclose(clean, zeroed)
    torch.testing.assert_close(clean, untouched)


def test_stop_after_raises_stopforward(tiny_gemma):
    with pytest.raises(StopForward):
        with metalens.hooks(tiny_gemma, {"blocks.0.hook_resid_pre": lambda a: None}, stop_after=True):
            tiny_gemma.hf(**tiny_gemma.tokenize(["abc"]))


def test_attention_pattern_rows_sum_to_one(tiny_gemma):
    seen = {}
    with metalens.hooks(tiny_gemma, {"blocks.0.attn.hook_pattern": lambda p: seen.setdefault("p", p)}):
        tiny_gemma.hf(**tiny_gemma.tokenize(["hello"]))
    pattern = seen["p"]
    assert pattern.shape == (1, tiny_gemma.n_heads, 6, 6)
    torch.testing.assert_close(pattern.sum(-1), torch.ones(1, tiny_gemma.n_heads, 6))


def test_capture_matches_transformerlens_bridge_cache(tiny_llama):
    sites = ["blocks.1.hook_resid_mid", "blocks.1.hook_attn_out", "blocks.1.attn.hook_z", "blocks.2.hook_mlp_out"]
    ours = metalens.capture(tiny_llama, ["hello world"], sites, positions="all", progress=False)
    _, cache = tiny_llama.bridge.run_with_cache("hello world")
    for site in sites:
        torch.testing.assert_close(ours[site], cache[site][0], atol=1e-5, rtol=1e-4)

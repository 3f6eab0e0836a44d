"""The real embedded gemma-3-270m: capture agrees with HF hidden states; views share weights."""
import pytest
import torch

import metalens

pytestmark = pytest.mark.integration
TEXTS = ["The cat sat on the mat.", "Paris is the capital of France, and it is large.", "Hi"]


def test_resid_post_equals_hf_hidden_states_at_every_layer(gemma):
    sites = [f"blocks.{layer}.hook_resid_post" for layer in range(gemma.n_layers - 1)]
    ours = metalens.capture(gemma, TEXTS, sites, positions="all", batch_size=3, progress=False)
    for i, text in enumerate(TEXTS):
        batch = gemma.tokenize([text])
        with torch.inference_mode():
            hidden = gemma.hf(**batch, output_hidden_states=True).hidden_states
        for layer, site in enumerate(sites):
            torch.testing.assert_close(ours.split(site)[i], hidden[layer + 1][0], atol=1e-3, rtol=1e-3)


def test_embedded_model_has_the_documented_shape(gemma):
    assert (gemma.n_layers, gemma.n_heads, gemma.d_model, gemma.d_vocab) == (18, 4, 640, 262144)
    unused = [t for t in gemma.tokenizer.convert_ids_to_tokens(list(range(gemma.d_vocab))) if t.startswith("<unused")]
    assert len(unused) == 6242


def test_bridge_view_wraps_the_same_weights_and_agrees(gemma):
    hf_ptrs = {p.data_ptr() for p in gemma.hf.parameters()}
    assert {p.data_ptr() for p in gemma.bridge.parameters()} <= hf_ptrs
    _, cache = gemma.bridge.run_with_cache(TEXTS[0])
    ours = metalens.capture(gemma, TEXTS[:1], ["blocks.6.hook_resid_post", "blocks.6.attn.hook_z"], positions="all", progress=False)
    for site in ours.sites:
        torch.testing.assert_close(ours[site], cache[site][0], atol=1e-4, rtol=1e-4)

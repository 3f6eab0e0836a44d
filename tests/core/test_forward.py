"""run_with_cache, site helpers, final_logits and tokenization sides: the core's one forward pass."""
import pytest
import torch

import metalens
from metalens import sites
from metalens.forward import run_with_cache


def test_site_helpers_name_the_transformerlens_hooks():
    assert sites.resid_post(6) == "blocks.6.hook_resid_post"
    assert sites.attn_z(3) == "blocks.3.attn.hook_z"
    assert sites.attn_pattern(0) == "blocks.0.attn.hook_pattern"
    assert sites.resid_pre(2) == "blocks.2.hook_resid_pre" and sites.mlp_out(1) == "blocks.1.hook_mlp_out"


def test_kept_activations_equal_a_hooked_full_pass(tiny_gemma):
    batch = tiny_gemma.tokenize(["hello there", "hi"])
    seen = {}
    with metalens.hooks(tiny_gemma, {sites.attn_z(1): lambda z: seen.__setitem__("z", z.clone())}), torch.no_grad():
        tiny_gemma.hf(**batch)
    cache = run_with_cache(tiny_gemma, batch["input_ids"], batch["attention_mask"], sites=[sites.attn_z(1)])
    torch.testing.assert_close(cache[sites.attn_z(1)], seen["z"])
    assert cache.logits is None  # stopped after block 1


def test_pass_stops_after_the_deepest_kept_site(tiny_gemma):
    ran = []
    handle = tiny_gemma.layers[2].register_forward_hook(lambda *a: ran.append(2))
    try:
        run_with_cache(tiny_gemma, tiny_gemma.tokenize(["abc"])["input_ids"], sites=[sites.resid_post(1)])
    finally:
        handle.remove()
    assert ran == []


def test_logits_equal_the_models_and_final_logits_rebuilds_them(tiny_gemma):
    batch = tiny_gemma.tokenize(["abc def"])
    cache = run_with_cache(tiny_gemma, batch["input_ids"], batch["attention_mask"], sites=[sites.FINAL_NORM],
                           logits=True)
    with torch.no_grad():
        expected = tiny_gemma.hf(**batch).logits
    torch.testing.assert_close(cache.logits, expected)
    torch.testing.assert_close(tiny_gemma.final_logits(cache[sites.FINAL_NORM]), expected)


def test_softcap_is_applied_once_when_the_config_has_one(tiny_gemma):
    tiny_gemma.hf.config.final_logit_softcapping = 2.0
    try:
        batch = tiny_gemma.tokenize(["abc"])
        cache = run_with_cache(tiny_gemma, batch["input_ids"], sites=[sites.FINAL_NORM], logits=True)
        rebuilt = tiny_gemma.final_logits(cache[sites.FINAL_NORM])
        torch.testing.assert_close(rebuilt, cache.logits)
        assert rebuilt.abs().max() <= 2.0
    finally:
        tiny_gemma.hf.config.final_logit_softcapping = None


def test_edits_change_what_later_sites_see(tiny_gemma):
    ids = tiny_gemma.tokenize(["abcd"])["input_ids"]
    plain = run_with_cache(tiny_gemma, ids, sites=[sites.resid_post(2)])
    zeroed = run_with_cache(tiny_gemma, ids, sites=[sites.resid_post(2), sites.attn_z(0)],
                            edits={sites.attn_z(0): lambda z: z * 0})
    assert zeroed[sites.attn_z(0)].abs().max() == 0  # kept after its edit
    assert not torch.allclose(plain[sites.resid_post(2)], zeroed[sites.resid_post(2)])


def test_an_edit_after_the_stop_is_refused(tiny_gemma):
    ids = tiny_gemma.tokenize(["ab"])["input_ids"]
    with pytest.raises(ValueError, match="would never run"):
        run_with_cache(tiny_gemma, ids, sites=[sites.resid_post(0)], edits={sites.attn_z(2): lambda z: z})


def test_gradients_reach_kept_sites(tiny_gemma):
    ids = tiny_gemma.tokenize(["abcd"])["input_ids"]
    cache = run_with_cache(tiny_gemma, ids, sites=[sites.attn_z(0), sites.resid_post(2)], grad=True)
    (grad,) = torch.autograd.grad(cache[sites.resid_post(2)].sum(), cache[sites.attn_z(0)])
    assert grad.shape == cache[sites.attn_z(0)].shape and grad.abs().sum() > 0
    assert not run_with_cache(tiny_gemma, ids, sites=[sites.resid_post(0)])[sites.resid_post(0)].requires_grad


def test_inputs_embeds_give_the_same_activations_as_ids(tiny_gemma):
    ids = tiny_gemma.tokenize(["hello"])["input_ids"]
    embeds = run_with_cache(tiny_gemma, ids, sites=[sites.EMBED])[sites.EMBED]
    a = run_with_cache(tiny_gemma, ids, sites=[sites.resid_post(1)])
    b = run_with_cache(tiny_gemma, inputs_embeds=embeds, sites=[sites.resid_post(1)])
    torch.testing.assert_close(a[sites.resid_post(1)], b[sites.resid_post(1)])


def test_nothing_to_return_is_an_error(tiny_gemma):
    with pytest.raises(ValueError, match="keep at least one site or pass logits=True"):
        run_with_cache(tiny_gemma, tiny_gemma.tokenize(["a"])["input_ids"])


def test_tokenize_left_or_right_never_mutates_the_shared_tokenizer(tiny_gemma):
    side = tiny_gemma.tokenizer.padding_side
    left = tiny_gemma.tokenize(["a", "abcd"], side="left")
    right = tiny_gemma.tokenize(["a", "abcd"], side="right")
    assert left["attention_mask"][0].tolist() == [0, 0, 0, 1, 1]
    assert right["attention_mask"][0].tolist() == [1, 1, 0, 0, 0]
    assert tiny_gemma.tokenizer.padding_side == side
    ids, mask = tiny_gemma.pad([[5, 6], [7, 8, 9]], side="left")
    assert ids[0].tolist()[-2:] == [5, 6] and mask[0].tolist() == [0, 1, 1]
    with pytest.raises(ValueError, match="side must be 'left' or 'right'"):
        tiny_gemma.tokenize(["a"], side="middle")


def test_nnsight_view_leaves_the_shared_tokenizer_alone(tiny_llama):
    tiny_llama.tokenizer.padding_side = "right"
    _ = tiny_llama.nnsight
    assert tiny_llama.tokenizer.padding_side == "right"


def test_logits_only_pass_needs_no_site(tiny_gemma):
    batch = tiny_gemma.tokenize(["abc"])
    cache = run_with_cache(tiny_gemma, batch["input_ids"], logits=True)
    assert len(cache) == 0 and cache.logits.shape[:2] == batch["input_ids"].shape


def test_gradients_reach_kept_sites_when_every_weight_is_frozen(tiny_llama):
    ids = tiny_llama.tokenize(["abcd"])["input_ids"]
    flags = [p.requires_grad for p in tiny_llama.hf.parameters()]
    for p in tiny_llama.hf.parameters():
        p.requires_grad_(False)
    try:
        cache = run_with_cache(tiny_llama, ids, sites=[sites.attn_z(0), sites.resid_post(2)], grad=True)
        (grad,) = torch.autograd.grad(cache[sites.resid_post(2)].sum(), cache[sites.attn_z(0)])
    finally:
        for p, flag in zip(tiny_llama.hf.parameters(), flags):
            p.requires_grad_(flag)
    assert grad.abs().sum() > 0


def test_kept_tensors_and_logits_are_ordinary_tensors_a_caller_may_edit_and_train_on(tiny_gemma):
    # The pass runs under inference_mode; what it returns must not be an inference tensor, which
    # refuses in-place edits and cannot be saved for backward outside that mode.
    batch = tiny_gemma.tokenize(["hello there"])
    cache = run_with_cache(tiny_gemma, batch["input_ids"], sites=[sites.resid_post(0)], logits=True)
    act, logits = cache[sites.resid_post(0)], cache.logits
    assert not act.is_inference() and not logits.is_inference()
    act[:, 0] = 0.0
    logits[..., 0] = -1e9
    weight = torch.ones(act.shape[-1], requires_grad=True)
    (act @ weight).sum().backward()
    assert weight.grad is not None

"""`ablate` and `scale_heads` edit exactly the chosen heads and always remove their hooks."""
import pytest
import torch

import metalens
from metalens import sites
from metalens.circuits import ablate, scale_heads


def _z(model, layer, texts):
    store = {}
    with metalens.hooks(model, {sites.attn_z(layer): lambda z: store.setdefault("z", z.clone())}):
        model.hf(**model.tokenize(texts))
    return store["z"]


def _logits(model, texts):
    with torch.no_grad():
        return model.hf(**model.tokenize(texts)).logits


TEXTS = ["hello world", "abcabcabc"]


def test_zero_ablation_zeroes_only_the_chosen_head(tiny_gemma):
    clean = _z(tiny_gemma, 1, TEXTS)
    with ablate(tiny_gemma, [(1, 2)], "zero"):
        z = _z(tiny_gemma, 1, TEXTS)
    assert z[:, :, 2].abs().max() == 0
    torch.testing.assert_close(z[:, :, [0, 1, 3]], clean[:, :, [0, 1, 3]])


def test_mean_ablation_writes_the_reference_mean(tiny_gemma):
    from metalens.circuits.ablation import head_activations

    ref = ["the quick brown fox", "jumps over"]
    mean = head_activations(tiny_gemma, ref, [0])[0][:, 1].mean(0)
    with ablate(tiny_gemma, [(0, 1)], "mean", reference=ref):
        z = _z(tiny_gemma, 0, TEXTS)
    torch.testing.assert_close(z[0, 3, 1], mean)


def test_resample_ablation_draws_values_seen_in_reference(tiny_gemma):
    from metalens.circuits.ablation import head_activations

    ref = ["zzzz qqqq"]
    pool = head_activations(tiny_gemma, ref, [2])[2][:, 0]
    with ablate(tiny_gemma, [(2, 0)], "resample", reference=ref):
        z = _z(tiny_gemma, 2, TEXTS)
    dists = torch.cdist(z[:, :, 0].reshape(-1, z.shape[-1]), pool)
    assert dists.min(dim=1).values.max() < 1e-5


def test_ablation_hooks_are_removed_even_on_error(tiny_gemma):
    before = _logits(tiny_gemma, TEXTS)
    with pytest.raises(RuntimeError):
        with ablate(tiny_gemma, [(0, 0), (2, 3)], "zero"):
            raise RuntimeError("boom")
    torch.testing.assert_close(_logits(tiny_gemma, TEXTS), before)


def test_scale_by_zero_equals_zero_ablation_and_by_one_is_identity(tiny_gemma):
    heads = [(0, 3), (1, 1)]
    clean = _logits(tiny_gemma, TEXTS)
    with scale_heads(tiny_gemma, heads, 1.0):
        torch.testing.assert_close(_logits(tiny_gemma, TEXTS), clean)
    with scale_heads(tiny_gemma, heads, 0.0):
        scaled = _logits(tiny_gemma, TEXTS)
    with ablate(tiny_gemma, heads, "zero"):
        torch.testing.assert_close(_logits(tiny_gemma, TEXTS), scaled)
    assert not torch.allclose(scaled, clean)


def test_ablating_a_head_out_of_range_says_how_many_there_are(tiny_gemma):
    with pytest.raises(ValueError, match="heads 0-3"):
        with ablate(tiny_gemma, [(0, 9)]):
            pass
    with pytest.raises(ValueError, match="needs `reference`"):
        with ablate(tiny_gemma, [(0, 1)], "mean"):
            pass


def test_scaling_applies_during_generation(tiny_llama):
    # llama, not gemma: gemma's post-attention RMSNorm cancels scaling *all* heads of a layer alike
    prompt = ["Q: What is 1 + 2?\nA:"]
    plain = metalens.generate(tiny_llama, prompt, max_new_tokens=6).ids
    every = [(l, h) for l in range(3) for h in range(4)]
    with scale_heads(tiny_llama, every, 50.0):
        loud = metalens.generate(tiny_llama, prompt, max_new_tokens=6).ids
    assert plain != loud

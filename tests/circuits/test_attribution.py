"""Attribution patching and EAP-IG against exact per-head activation patching."""
import pytest
import torch

from metalens.circuits import ContrastTask, attribute_heads, patch_heads_exact
from metalens.circuits.heads import spearman
from metalens.circuits.metrics import prepare
from metalens.circuits.tasks import induction_task
from metalens.testing import tiny_model


@pytest.fixture(scope="module")
def linear_model():
    """One llama block whose logits are linear in z: MLP output zeroed, final RMSNorm made linear by a huge eps."""
    model = tiny_model("llama", n_layers=1)
    model.hf.double()
    model.layers[0].mlp.down_proj.weight.data.zero_()
    model.hf.model.norm.variance_epsilon = 1e10  # rsqrt(mean(x^2) + eps) ~ constant
    return model


@pytest.mark.parametrize("method", ["attribution", "ig"])
def test_attribution_equals_exact_patching_when_metric_is_linear_in_z(linear_model, method):
    task = induction_task(linear_model.tokenizer, n=4)
    exact = patch_heads_exact(linear_model, task)
    approx = attribute_heads(linear_model, task, method, steps=3)
    assert exact.abs().max() > 0
    torch.testing.assert_close(approx, exact, rtol=1e-4, atol=1e-4 * float(exact.abs().max()))


def test_attribution_ranks_heads_like_exact_patching_on_random_model(tiny_llama):
    task = induction_task(tiny_llama.tokenizer, n=6)
    assert spearman(attribute_heads(tiny_llama, task), patch_heads_exact(tiny_llama, task)) > 0.7


def test_kl_gradient_vanishes_at_clean_run_but_integrated_gradients_do_not(tiny_gemma):
    task = induction_task(tiny_gemma.tokenizer, n=6, metric="kl")
    plain = attribute_heads(tiny_gemma, task, "attribution")
    ig = attribute_heads(tiny_gemma, task, "ig", steps=4)
    exact = patch_heads_exact(tiny_gemma, task)
    assert plain.abs().max() < 1e-5 * exact.abs().max() + 1e-9
    assert spearman(ig, exact) > 0.5


def test_patching_a_head_with_identical_prompts_changes_nothing(tiny_gemma):
    text = ["abcdefabc", "xyzuvwxyz"]
    task = ContrastTask("same", text, text, ["d", "u"], ["e", "v"])
    assert patch_heads_exact(tiny_gemma, task).abs().max() == 0
    assert attribute_heads(tiny_gemma, task).abs().max() == 0


def test_exact_patching_scores_only_requested_heads(tiny_gemma):
    task = induction_task(tiny_gemma.tokenizer, n=2)
    scores = patch_heads_exact(tiny_gemma, task, heads=[(1, 2)])
    assert torch.isnan(scores).sum() == scores.numel() - 1 and not torch.isnan(scores[1, 2])


def test_prepare_rejects_pairs_of_unequal_token_length(tiny_gemma):
    task = ContrastTask("bad", ["abcd"], ["abcdef"], ["e"], ["g"])
    with pytest.raises(ValueError, match="equal lengths"):
        prepare(tiny_gemma, task)


def test_attribution_needs_no_trainable_weights(tiny_gemma):
    # a merged LoRA checkpoint comes back with frozen weights; gradients must still reach z
    task = induction_task(tiny_gemma.tokenizer, n=3)
    expected = attribute_heads(tiny_gemma, task)
    try:
        tiny_gemma.hf.requires_grad_(False)
        frozen = attribute_heads(tiny_gemma, task)
    finally:
        tiny_gemma.hf.requires_grad_(True)
    torch.testing.assert_close(frozen, expected)

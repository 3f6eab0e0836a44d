"""Logit lens: one decoding, three capture backends that agree, the last layer equal to the model."""
import argparse

import pytest
import torch

from metalens.circuits.cli import register
from metalens.circuits.lens import BACKENDS, LensResult, logit_lens
from metalens.testing import tiny_model

PROMPT = "the cat sat on"


@pytest.fixture(scope="module", params=["gemma3", "llama"])
def model(request):
    return tiny_model(request.param, seed=3)


def test_shapes_follow_layers_and_prompt_tokens(model):
    result = logit_lens(model, PROMPT, target=" mat")
    n_pos = len(model.tokenize([PROMPT])["input_ids"][0])
    assert len(result.tokens) == n_pos and result.tokens[1:] == list(PROMPT)  # BOS, then one token per character
    for grid in (result.top_token, result.top_prob, result.target_prob):
        assert len(grid) == model.n_layers and all(len(row) == n_pos for row in grid)
    assert result.target_token == " "  # the target's first token


@pytest.mark.parametrize("backend", ["transformer_lens", "nnsight"])
def test_backends_agree_with_hf(model, backend):
    ours = logit_lens(model, PROMPT, target=" mat", backend="hf")
    theirs = logit_lens(model, PROMPT, target=" mat", backend=backend)
    assert theirs.tokens == ours.tokens and theirs.top_token == ours.top_token
    torch.testing.assert_close(torch.tensor(theirs.top_prob), torch.tensor(ours.top_prob), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(torch.tensor(theirs.target_prob), torch.tensor(ours.target_prob), atol=1e-5, rtol=1e-4)


def test_last_layer_is_the_models_next_token_distribution(model):
    result = logit_lens(model, PROMPT, target="t")
    batch = model.tokenize([PROMPT])
    with torch.no_grad():
        probs = model.hf(**batch).logits[0].float().softmax(-1)  # [pos, vocab], softcap included
    top_prob, top_id = probs.max(-1)
    assert result.top_token[-1] == [model.tokenizer.decode([i]) for i in top_id.tolist()]
    torch.testing.assert_close(torch.tensor(result.top_prob[-1]), top_prob, atol=1e-5, rtol=1e-4)
    t_id = model.tokenizer("t", add_special_tokens=False)["input_ids"][0]
    torch.testing.assert_close(torch.tensor(result.target_prob[-1]), probs[:, t_id], atol=1e-5, rtol=1e-4)


def test_save_load_round_trips_and_writes_a_report(model, tmp_path):
    result = logit_lens(model, PROMPT, target=" mat")
    result.save(tmp_path)
    assert LensResult.load(tmp_path) == result
    page = (tmp_path / "report.html").read_text()
    assert "Top token per layer and position" in page and "at the last position" in page


def test_unknown_backend_names_the_valid_ones(model):
    with pytest.raises(ValueError, match="Unknown backend 'jax'.*transformer_lens"):
        logit_lens(model, PROMPT, backend="jax")
    assert BACKENDS == ("hf", "transformer_lens", "nnsight")


def test_lens_verb_writes_results_and_says_where(tmp_path, capsys):
    tiny = tiny_model("gemma3", seed=3)
    tiny.hf.save_pretrained(tmp_path / "m")
    tiny.tokenizer.save_pretrained(tmp_path / "m")
    sub = argparse.ArgumentParser().add_subparsers()
    register(sub)
    args = sub.choices["lens"].parse_args(["--model", str(tmp_path / "m"), "--device", "cpu", "--prompt", PROMPT,
                                           "--target", " mat", "--out", str(tmp_path / "out")])
    args.func(args)
    assert f"wrote {tmp_path / 'out'}/results.json" in capsys.readouterr().out
    saved = LensResult.load(tmp_path / "out")
    assert saved.top_token == logit_lens(tiny, PROMPT, target=" mat").top_token

"""`load_model`: `random:` models for tests and benches, and local folders checked before transformers sees them."""
import pytest
import torch

import metalens
from metalens.testing import tiny_model


@pytest.mark.parametrize("name,arch", [("random:tiny-gemma3", "gemma3"), ("random:tiny-llama", "llama")])
def test_random_tiny_names_load_the_testing_tiny_models_seeded(name, arch):
    model = metalens.load_model(name, device="cpu")
    assert model.name == name and model.n_layers == 3 and model.d_model == 64
    for got, want in zip(model.hf.parameters(), tiny_model(arch).hf.parameters()):
        assert torch.equal(got, want)  # the same weights every call: no hidden randomness


def test_an_unknown_random_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"random:tiny-gemma3.*random:gemma-3-270m"):
        metalens.load_model("random:nope", device="cpu")


def test_a_plain_folder_names_what_a_model_folder_lacks(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ValueError, match=r"lacks config\.json, weights .*, a tokenizer"):
        metalens.load_model(str(tmp_path), device="cpu")


def test_a_folder_with_weights_but_no_tokenizer_names_the_tokenizer(tmp_path, tiny_gemma):
    tiny_gemma.hf.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"lacks a tokenizer") as err:
        metalens.load_model(str(tmp_path), device="cpu")
    assert "config.json" not in str(err.value).split("lacks")[1].split(".")[0]


def test_a_missing_path_is_not_sent_to_the_hub(tmp_path):
    with pytest.raises(ValueError, match="no such folder"):
        metalens.load_model(str(tmp_path / "gone"), device="cpu")

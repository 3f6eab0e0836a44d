"""Control-vector GGUF files: llama.cpp's layout, repeng's files, round trips, and the layer numbering."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from metalens.sites import resid_post
from metalens.steering import SteeringVector

gguf = pytest.importorskip("gguf")


def vector(model, layers=(1, 2)) -> SteeringVector:
    gen = torch.Generator().manual_seed(0)
    return SteeringVector({k: torch.randn(model.d_model, generator=gen) for k in layers}, model.name, model.d_model,
                          method="mean_diff", positions="last", seed=3, n_pairs=7)


def field_string(reader, key):
    f = reader.get_field(key)
    return bytes(f.parts[f.data[0]]).decode()


def test_written_file_has_llama_cpp_control_vector_layout(tiny_gemma, tmp_path):
    vec = vector(tiny_gemma)
    vec.to_gguf(tmp_path / "v.gguf", model_hint="gemma3")
    reader = gguf.GGUFReader(str(tmp_path / "v.gguf"))
    assert field_string(reader, "general.architecture") == "controlvector"
    assert field_string(reader, "controlvector.model_hint") == "gemma3"
    f = reader.get_field("controlvector.layer_count")
    assert int(f.parts[f.data[0]][0]) == 2
    tensors = {t.name: t for t in reader.tensors}
    assert sorted(tensors) == ["direction.1", "direction.2"]  # metalens layer L -> direction.L, unchanged
    for layer in (1, 2):
        t = tensors[f"direction.{layer}"]
        assert t.tensor_type == gguf.GGMLQuantizationType.F32 and list(t.shape) == [tiny_gemma.d_model]
        np.testing.assert_array_equal(np.asarray(t.data), vec.directions[layer].numpy())


def test_strength_scales_the_written_directions(tiny_gemma, tmp_path):
    vec = vector(tiny_gemma, layers=(2,))
    vec.to_gguf(tmp_path / "v.gguf", strength=2.5)
    t = gguf.GGUFReader(str(tmp_path / "v.gguf")).tensors[0]
    np.testing.assert_allclose(np.asarray(t.data), 2.5 * vec.directions[2].numpy(), rtol=1e-6)


def test_round_trip_keeps_directions_and_provenance(tiny_gemma, tmp_path):
    vec = vector(tiny_gemma)
    for strength in (1.0, -2.0):
        back = SteeringVector.from_gguf(vec.to_gguf(tmp_path / f"v{strength}.gguf", strength=strength), tiny_gemma)
        assert back.layers == [1, 2] and back.model_name == vec.model_name and back.d_model == vec.d_model
        assert (back.method, back.positions, back.seed, back.n_pairs) == ("mean_diff", "last", 3, 7)
        for layer in (1, 2):
            torch.testing.assert_close(back.directions[layer], vec.directions[layer])


def write_like_repeng(path, directions: dict[int, np.ndarray], model_type="llama"):
    """The calls repeng's ControlVector.export_gguf makes (repeng/extract.py)."""
    writer = gguf.GGUFWriter(str(path), "controlvector")
    writer.add_string("controlvector.model_hint", model_type)
    writer.add_uint32("controlvector.layer_count", len(directions))
    for layer in directions:
        writer.add_tensor(f"direction.{layer}", directions[layer])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_reads_a_repeng_file_onto_the_same_blocks(tiny_gemma, tmp_path):
    rng = np.random.default_rng(0)
    dirs = {2: rng.standard_normal(tiny_gemma.d_model).astype(np.float32),
            1: rng.standard_normal(tiny_gemma.d_model).astype(np.float32)}
    write_like_repeng(tmp_path / "r.gguf", dirs)
    vec = SteeringVector.from_gguf(tmp_path / "r.gguf", tiny_gemma)
    assert vec.layers == [1, 2] and vec.model_name == tiny_gemma.name and vec.metadata["model_hint"] == "llama"
    for layer in (1, 2):
        np.testing.assert_array_equal(vec.directions[layer].numpy(), dirs[layer])
    # repeng's direction L is added to block L's output, as llama.cpp's is: metalens' blocks.L.hook_resid_post
    assert sorted(vec.edits(tiny_gemma)) == [resid_post(1), resid_post(2)]
    assert SteeringVector.from_gguf(tmp_path / "r.gguf").model_name == "llama"  # no model: named by the hint


def test_a_cvector_generator_file_reads_onto_the_blocks_llama_cpp_steers(tiny_gemma, tmp_path):
    # llama-cvector-generator names the direction measured on block il's output direction.(il+1), for
    # il in 0..n_layer-2; llama.cpp's loader adds direction.L to block L's output. Read as llama.cpp applies it.
    rng = np.random.default_rng(1)
    measured_on = {il: rng.standard_normal(tiny_gemma.d_model).astype(np.float32)
                   for il in range(tiny_gemma.n_layers - 1)}
    write_like_repeng(tmp_path / "g.gguf", {il + 1: v for il, v in measured_on.items()})
    vec = SteeringVector.from_gguf(tmp_path / "g.gguf", tiny_gemma)
    assert vec.layers == list(range(1, tiny_gemma.n_layers))
    for il, v in measured_on.items():  # block il's direction steers block il + 1, as in llama.cpp
        np.testing.assert_array_equal(vec.directions[il + 1].numpy(), v)
    assert sorted(vec.edits(tiny_gemma)) == sorted(resid_post(l) for l in range(1, tiny_gemma.n_layers))


def test_layer_zero_is_refused_both_ways(tiny_gemma, tmp_path):
    with pytest.raises(ValueError, match="llama.cpp cannot steer"):
        vector(tiny_gemma, layers=(0, 1)).to_gguf(tmp_path / "v.gguf")
    write_like_repeng(tmp_path / "z.gguf", {0: np.ones(tiny_gemma.d_model, np.float32)})
    with pytest.raises(ValueError, match="direction.0"):
        SteeringVector.from_gguf(tmp_path / "z.gguf")


def test_a_file_for_another_model_size_or_not_a_control_vector_is_refused(tiny_gemma, tmp_path):
    write_like_repeng(tmp_path / "big.gguf", {1: np.ones(tiny_gemma.d_model + 1, np.float32)})
    with pytest.raises(ValueError, match="d_model"):
        SteeringVector.from_gguf(tmp_path / "big.gguf", tiny_gemma)
    writer = gguf.GGUFWriter(str(tmp_path / "m.gguf"), "llama")
    writer.add_tensor("token_embd.weight", np.ones(4, np.float32))
    writer.write_header_to_file(), writer.write_kv_data_to_file(), writer.write_tensors_to_file(), writer.close()
    with pytest.raises(ValueError, match="not a control vector"):
        SteeringVector.from_gguf(tmp_path / "m.gguf")

"""Bad inputs to `probe` and `neurofeedback` (and to the artifacts they save): one line naming the flag or
file, exit 2, before the model loads and before anything is written under --out."""
import json

import pytest
import torch

from metalens.probes import Axes, LayerSweep, NeurofeedbackConfig, Probe, load_dataset
from tests.cli_checks import refused


NF = ["neurofeedback", "--model", "tiny", "--quick"]


@pytest.mark.parametrize("flag, value", [("--draws", "0"), ("--draws", "1"), ("--n-values=-2,4", None),
                                         ("--pcs", "0,8"), ("--max-sentences", "-5"), ("--implicit-trials", "0"),
                                         ("--control-examples", "nan"), ("--seed", "-1"), ("--layers", "-1")])
def test_a_bad_neurofeedback_number_names_its_flag(flag, value, tmp_path, capsys, no_model):
    out = tmp_path / "run"
    err = refused(NF + [flag] + ([value] if value is not None else []) + ["--out", str(out)], capsys)
    assert flag.split("=")[0] in err and not out.exists()


def test_pcs_beyond_the_fit_split_are_refused_before_the_model_loads(tmp_path, capsys, no_model):
    out = tmp_path / "run"
    err = refused(NF + ["--max-sentences", "40", "--pcs", "1,9999", "--out", str(out)], capsys)
    assert "9999" in err and "at most PC" in err and not out.exists()


def test_an_unknown_target_axis_is_refused_before_the_model_loads(tmp_path, capsys, no_model):
    err = refused(NF + ["--pcs", "1", "--implicit-targets", "PC7", "--out", str(tmp_path / "run")], capsys)
    assert "PC7" in err


def test_several_layers_need_the_paper_protocol(tmp_path, capsys, no_model):
    err = refused(NF + ["--layers", "1", "2", "--out", str(tmp_path / "run")], capsys)
    assert "--layers" in err and "--protocol paper" in err


@pytest.mark.parametrize("verb", ["neurofeedback", "probe"])
def test_data_naming_a_folder_is_refused(verb, tmp_path, capsys, no_model):
    err = refused([verb, "--data", str(tmp_path), "--out", str(tmp_path / "run")], capsys)
    assert "--data" in err and "directory" in err


@pytest.mark.parametrize("verb", ["neurofeedback", "probe"])
def test_out_naming_a_file_is_refused(verb, tmp_path, capsys, no_model):
    file = tmp_path / "taken.txt"
    file.write_text("mine")
    err = refused([verb, "--out", str(file)], capsys)
    assert "--out" in err and file.read_text() == "mine"


def test_probe_refuses_an_out_holding_a_capture(tmp_path, capsys, no_model):
    store = tmp_path / "store"
    store.mkdir()
    (store / "manifest.json").write_text("{}")
    (store / "shard-00000.safetensors").write_bytes(b"")
    err = refused(["probe", "--out", str(store)], capsys)
    assert "capture" in err and sorted(p.name for p in store.iterdir()) == ["manifest.json", "shard-00000.safetensors"]


def test_a_short_csv_row_names_the_file_and_line(tmp_path, capsys, no_model):
    path = tmp_path / "tf.csv"
    path.write_text("statement,label\nThe sky is blue.,1\nGrass is red.\n")
    with pytest.raises(ValueError, match=r"tf.csv:3"):
        load_dataset(path)
    err = refused(["probe", "--data", str(path), "--out", str(tmp_path / "run")], capsys)
    assert "tf.csv:3" in err and not (tmp_path / "run").exists()


@pytest.mark.parametrize("field, value", [("draws", 0), ("n_values", (-2, 4)), ("n_values", ()), ("pcs", (0,)),
                                          ("fit_fraction", 1.0), ("max_sentences", 2), ("layer", -1)])
def test_the_config_refuses_what_would_end_in_nan_or_an_index_error(field, value):
    with pytest.raises(ValueError, match=field):
        NeurofeedbackConfig(**{field: value})


def test_only_the_paper_preset_leaves_out_pcs_beyond_the_data():
    assert NeurofeedbackConfig.paper().pcs_up_to_rank
    assert not NeurofeedbackConfig.paper(pcs=(1, 2)).pcs_up_to_rank and not NeurofeedbackConfig().pcs_up_to_rank


def _sweep(width: int, declared: int) -> LayerSweep:
    probe = Probe(torch.ones(width), 0.0, 0.5, 0.1, 0.5, {"layer": 1})
    return LayerSweep([1], [probe], ["blocks.1.hook_resid_post"], {"d_model": declared, "model": "tiny"})


def test_a_layer_sweep_wider_than_its_declared_model_is_refused_naming_the_file(tmp_path):
    _sweep(1280, 640).save(tmp_path / "sweep")
    with pytest.raises(ValueError, match=r"layer_sweep.safetensors.*\[1, 1280\].*\[1, 640\]"):
        LayerSweep.load(tmp_path / "sweep")


def test_a_layer_sweep_is_checked_against_the_model_it_is_used_with(tmp_path, tiny_gemma):
    _sweep(tiny_gemma.d_model * 2, tiny_gemma.d_model * 2).save(tmp_path / "sweep")
    sweep = LayerSweep.load(tmp_path / "sweep")
    with pytest.raises(ValueError, match=f"{tmp_path / 'sweep'}.*width {tiny_gemma.d_model * 2}"):
        sweep.check_model(tiny_gemma)
    _sweep(tiny_gemma.d_model, tiny_gemma.d_model).save(tmp_path / "fits")
    LayerSweep.load(tmp_path / "fits").check_model(tiny_gemma)


def test_a_layer_sweep_with_fewer_entries_than_weights_is_refused(tmp_path):
    _sweep(8, 8).save(tmp_path / "sweep")
    meta = json.loads((tmp_path / "sweep" / "layer_sweep.json").read_text())
    meta["probes"] = []
    (tmp_path / "sweep" / "layer_sweep.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="layer_sweep.json"):
        LayerSweep.load(tmp_path / "sweep")


def test_a_probe_wider_than_its_declared_model_is_refused(tmp_path):
    Probe(torch.ones(12), 0.0, metadata={"d_model": 8}).save(tmp_path / "probe")
    with pytest.raises(ValueError, match=r"probe.safetensors.*\[12\]"):
        Probe.load(tmp_path / "probe")


def test_axes_whose_tensors_disagree_with_their_names_are_refused(tmp_path):
    axes = Axes(["PC1", "LR"], torch.eye(2, 6), torch.zeros(6), torch.ones(2), torch.zeros(2), {"d_model": 6})
    axes.save(tmp_path / "axes")
    assert Axes.load(tmp_path / "axes").names == ["PC1", "LR"]
    meta = json.loads((tmp_path / "axes" / "axes.json").read_text())
    meta["names"] = ["PC1"]
    (tmp_path / "axes" / "axes.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"axes.safetensors.*directions"):
        Axes.load(tmp_path / "axes")


def test_axes_refuse_activations_of_another_width():
    axes = Axes(["PC1"], torch.eye(1, 6), torch.zeros(6), torch.ones(1), torch.zeros(1))
    with pytest.raises(ValueError, match="width 4.*expect 6"):
        axes.project(torch.zeros(3, 4))

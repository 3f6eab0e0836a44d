"""`run_probe_sweep` (the `metalens probe` workflow): one call from config to a saved folder that
loads back, with the probes stored as a versioned artifact."""
import json

import pytest
import torch

from metalens.probes import LayerSweep, ProbeSweepConfig, run_probe_sweep
from metalens.report import PLOTLY_JS


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_gemma):
    out = tmp_path_factory.mktemp("sweep")
    cfg = ProbeSweepConfig(dataset="moral", layers=(0, 2), max_sentences=40, cv=3)
    return run_probe_sweep(tiny_gemma, cfg, out=out, progress=False), out


def test_sweep_writes_results_report_and_a_versioned_artifact(saved):
    sweep, out = saved
    results = json.loads((out / "results.json").read_text())
    assert [r["layer"] for r in results["rows"]] == [0, 2] and results["best_layer"] == sweep.best_layer
    assert results["sites"] == ["blocks.0.hook_resid_post", "blocks.2.hook_resid_post"]
    assert results["metadata"]["dataset"] == "moral" and results["metadata"]["config"]["max_sentences"] == 40
    meta = json.loads((out / "layer_sweep.json").read_text())
    assert meta["format"] == {"name": "layer_sweep", "version": 1}
    page = (out / "report.html").read_text()
    assert "Accuracy by layer" in page and (out / PLOTLY_JS).exists()


def test_saved_sweep_loads_back_and_predicts_identically(saved, tiny_gemma):
    sweep, out = saved
    back = LayerSweep.load(out)
    assert back.layers == [0, 2] and back.sites == sweep.sites and back.best_layer == sweep.best_layer
    x = torch.randn(5, tiny_gemma.d_model)
    for L in back.layers:
        assert torch.equal(back.probe(L).predict(x), sweep.probe(L).predict(x))
        assert back.probe(L).cv_accuracy == pytest.approx(sweep.probe(L).cv_accuracy)
    assert back.probe(2).metadata["site"] == "blocks.2.hook_resid_post"


def test_max_sentences_caps_the_texts_each_probe_sees(saved):
    sweep, _ = saved
    assert sweep.metadata["n_texts"] == 40 and all(p.metadata["n"] == 40 for p in sweep.probes)
    assert all(p.metadata["grouped"] for p in sweep.probes)  # the shipped set's groups reach the splits


def test_loading_a_folder_without_a_sweep_says_what_to_point_at(tmp_path):
    with pytest.raises(FileNotFoundError, match="LayerSweep.save"):
        LayerSweep.load(tmp_path)


def test_asking_for_a_layer_outside_the_sweep_names_the_swept_layers(saved):
    with pytest.raises(KeyError, match=r"\[0, 2\]"):
        saved[0].probe(1)


def test_old_positional_call_is_refused_with_the_new_form(tiny_gemma):
    with pytest.raises(TypeError, match="ProbeSweepConfig"):
        run_probe_sweep(tiny_gemma, [0, 2])


def test_probe_cli_builds_its_config_from_arguments(monkeypatch, tmp_path, tiny_gemma, capsys):
    import metalens
    from metalens.cli import main

    monkeypatch.setattr(metalens, "load_model", lambda name, device=None, dtype=None: tiny_gemma)
    out = tmp_path / "cli"
    assert main(["probe", "--model", "tiny", "--layers", "1", "--out", str(out)]) == 0
    assert LayerSweep.load(out).layers == [1]
    assert "best layer 1" in capsys.readouterr().out

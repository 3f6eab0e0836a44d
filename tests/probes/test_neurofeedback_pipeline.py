"""The whole paradigm on a tiny model writes results.json and report.html that agree."""
import json

import pytest

from metalens.probes import NeurofeedbackConfig, NeurofeedbackResult, run_neurofeedback


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_llama):
    out = tmp_path_factory.mktemp("nf")
    cfg = NeurofeedbackConfig.quick(layer=1, max_sentences=40, n_values=(0, 1, 2), draws=2, control_examples=2,
                                    implicit_trials=2, explicit_trials=1, max_new_tokens=3)
    run_neurofeedback(tiny_llama, cfg, out=out, progress=False)
    return out


def test_run_writes_results_and_report(run_dir):
    data = json.loads((run_dir / "results.json").read_text())
    assert set(data["reporting"]["curves"]) == {"PC1", "PC8", "LR", "shuffled"}
    assert set(data["data"]["fit_indices"]).isdisjoint(data["data"]["pool_indices"])
    assert data["summary"]["n_axes"] == 3 and data["metadata"]["layer"] == 1
    assert "Sentence" not in data["reporting"]["example_prompt"] or data["reporting"]["metadata"]["format"] == "plain"
    html = (run_dir / "report.html").read_text()
    assert "Reporting accuracy vs N" in html and "plotly" in html


def test_reporting_rows_and_report_carry_the_surface_baseline(run_dir):
    data = json.loads((run_dir / "results.json").read_text())
    assert all(0 <= r["surface_accuracy"] <= 1 for r in data["reporting"]["tests"])
    assert all("surface_accuracy" in r for r in data["summary"]["rows"])
    assert "LR: words only" in (run_dir / "report.html").read_text()


def test_saved_run_loads_back_with_axes(run_dir):
    res = NeurofeedbackResult.load(run_dir)
    assert res.axes.names == ["PC1", "PC8", "LR"]
    assert len(res.figures()) == 5


def test_cli_registers_neurofeedback_with_quick():
    from metalens.cli import build_parser

    args = build_parser().parse_args(["neurofeedback", "--model", "x", "--out", "o", "--quick", "--layers", "3"])
    assert args.quick and args.layers == [3] and args.func.__name__ == "_neurofeedback"
    args = build_parser().parse_args(["probe", "--out", "o", "--layers", "1", "2"])
    assert args.layers == [1, 2]
    assert build_parser().parse_args(["probe", "--out", "o", "--layers", "all"]).layers == ["all"]


def test_old_positional_layer_is_refused_with_the_new_form(tiny_llama):
    with pytest.raises(TypeError, match=r"NeurofeedbackConfig\(layer=9\)"):
        run_neurofeedback(tiny_llama, 1)


def test_loading_a_folder_without_results_says_what_to_point_at(tmp_path):
    with pytest.raises(FileNotFoundError, match="run_neurofeedback"):
        NeurofeedbackResult.load(tmp_path)


def test_report_loads_the_shared_plotlyjs_beside_it(run_dir):
    from metalens.report import PLOTLY_JS

    assert f"src='{PLOTLY_JS}'" in (run_dir / "report.html").read_text() and (run_dir / PLOTLY_JS).exists()


def test_neurofeedback_cli_runs_the_config_it_parsed(monkeypatch, tmp_path, tiny_llama, capsys):
    import metalens
    from metalens.cli import main

    monkeypatch.setattr(metalens, "load_model", lambda name, device=None, dtype=None: tiny_llama)
    out = tmp_path / "cli"
    argv = ["neurofeedback", "--model", "tiny", "--quick", "--layers", "2", "--out", str(out), "--max-sentences", "40",
            "--pcs", "1", "--n-values", "0,1,2", "--draws", "2", "--control-examples", "2", "--implicit-trials", "2",
            "--explicit-targets", ""]
    assert main(argv) == 0
    data = NeurofeedbackResult.load(out).data
    assert data["config"]["layer"] == 2 and data["config"]["pcs"] == [1] and data["explicit"] is None
    assert "reportable axes:" in capsys.readouterr().out

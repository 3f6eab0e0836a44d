"""The whole paradigm on a tiny model writes results.json and report.html that agree."""
import json

import pytest

from metalens.probes import NeurofeedbackConfig, NeurofeedbackResult, run_neurofeedback


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_llama):
    out = tmp_path_factory.mktemp("nf")
    cfg = NeurofeedbackConfig.quick(max_sentences=40, n_values=(0, 1, 2), draws=2, control_examples=2,
                                    implicit_trials=2, explicit_trials=1, max_new_tokens=3)
    run_neurofeedback(tiny_llama, 1, out, cfg, progress=False)
    return out


def test_run_writes_results_and_report(run_dir):
    data = json.loads((run_dir / "results.json").read_text())
    assert set(data["reporting"]["curves"]) == {"PC1", "PC8", "LR", "shuffled"}
    assert set(data["data"]["fit_indices"]).isdisjoint(data["data"]["pool_indices"])
    assert data["summary"]["n_axes"] == 3 and data["metadata"]["layer"] == 1
    assert "Sentence" not in data["reporting"]["example_prompt"] or data["reporting"]["metadata"]["format"] == "plain"
    html = (run_dir / "report.html").read_text()
    assert "Reporting accuracy vs N" in html and "plotly" in html


def test_saved_run_loads_back_with_axes(run_dir):
    res = NeurofeedbackResult.load(run_dir)
    assert res.axes.names == ["PC1", "PC8", "LR"]
    assert len(res.figures()) == 5


def test_cli_registers_neurofeedback_with_quick():
    from metalens.cli import build_parser

    args = build_parser().parse_args(["neurofeedback", "--model", "x", "--out", "o", "--quick", "--layer", "3"])
    assert args.quick and args.layer == 3 and args.func.__name__ == "_neurofeedback"
    args = build_parser().parse_args(["probe", "--out", "o", "--layers", "1,2"])
    assert args.layers == "1,2"

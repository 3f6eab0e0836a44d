"""`steer_rule` and `metalens steer` write results.json and report.html with the promised fields."""
from __future__ import annotations

import json

from metalens.cli import build_parser, main
from metalens.steering import RuleBook, steer_rule

PROMPTS = ["hi", "yo", "ok", "no", "so", "be"]


def test_steer_rule_writes_results_report_and_rulebook(tiny_gemma, tmp_path):
    summary = steer_rule(tiny_gemma, "ocean", prompts=PROMPTS, out=tmp_path, layers=[1], strengths=(1.0, 2.0),
                         rounds=1, max_new_tokens=4, n_select=2)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["n_select"] == 2 and saved["n_test"] == 4 and saved["layer"] == 1
    assert {"adherence", "low", "high", "nll", "fluency_cost"} <= set(saved["steered"])
    assert [r["round"] for r in saved["mentor"]] == [0, 1]
    assert len(saved["sweep"]) == 3 and len(saved["samples"]) == 4
    assert "plotly" in (tmp_path / "report.html").read_text()
    assert "ocean" in RuleBook.load(tmp_path / "rulebook")


def test_steer_verb_is_registered_with_its_options():
    args = build_parser().parse_args(["steer", "--rule", "ocean", "--out", "x", "--rounds", "2", "--layer", "3",
                                      "--layer", "5", "--strength", "1.5"])
    assert args.rounds == 2 and args.layer == [3, 5] and args.strength == [1.5] and args.func.__name__ == "_steer"


def test_steer_cli_runs_end_to_end_on_a_saved_tiny_model(tiny_gemma, tmp_path, capsys):
    tiny_gemma.hf.save_pretrained(tmp_path / "model")
    tiny_gemma.tokenizer.save_pretrained(tmp_path / "model")
    (tmp_path / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    code = main(["steer", "--model", str(tmp_path / "model"), "--device", "cpu", "--rule", "space",
                 "--prompts", str(tmp_path / "prompts.txt"), "--out", str(tmp_path / "out"), "--layer", "1",
                 "--strength", "1", "--max-new-tokens", "3"])
    assert code == 0
    assert "adherence unsteered" in capsys.readouterr().out
    assert (tmp_path / "out" / "results.json").exists() and (tmp_path / "out" / "report.html").exists()


def test_steer_cli_reports_bad_layer_as_an_error(tiny_gemma, tmp_path, capsys):
    tiny_gemma.hf.save_pretrained(tmp_path / "model")
    tiny_gemma.tokenizer.save_pretrained(tmp_path / "model")
    code = main(["steer", "--model", str(tmp_path / "model"), "--device", "cpu", "--rule", "ocean",
                 "--out", str(tmp_path / "out"), "--layer", "7"])
    assert code == 2 and "out of range" in capsys.readouterr().err


def test_demo_writes_a_report_with_one_mentor_round(tiny_gemma, tmp_path):
    from metalens.steering import demo

    summary = demo(tiny_gemma, tmp_path)
    assert (tmp_path / "report.html").exists() and len(summary["mentor"]) == 2 and summary["n_test"] == 5

"""`run_steer` and `metalens steer` write results.json, report.html and the rule book with the promised fields."""
from __future__ import annotations

import json

import pytest

from metalens import power
from metalens.cli import build_parser, main
from metalens.steering import RuleBook, SteerConfig, SteerResult, run_steer

PROMPTS = ["hi", "yo", "ok", "no", "so", "be"]
MORE = PROMPTS + ["go", "up", "we", "me"]


def test_run_steer_writes_results_report_and_rulebook(tiny_gemma, tmp_path):
    config = SteerConfig("ocean", prompts=MORE, layers=[1], strengths=(1.0, 2.0), rounds=1, max_new_tokens=4,
                         n_select=2, n_validate=4)
    result = run_steer(tiny_gemma, config, out=tmp_path, progress=False)
    assert result.n_select == 2 and result.n_test == 4 and result.layer == 1 and result.strength in (1.0, 2.0)
    assert 0 <= result.steered.low <= result.steered.adherence <= result.steered.high <= 1
    assert result.mentored is not None and result.mentored.n == 4
    assert set(result.paired) == {"steered_minus_unsteered", "mentored_minus_steered"}
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["n_select"] == 2 and saved["n_validate"] == 4 and saved["n_test"] == 4 and saved["layer"] == 1
    assert saved["paired"]["steered_minus_unsteered"]["n"] == 4 and saved["mentored"]["n"] == 4
    mde = saved["paired"]["steered_minus_unsteered"]["mde"]  # the sensitivity beside the interval
    assert (mde["design"], mde["n"], mde["alpha"], mde["power"]) == ("paired mean (t-test)", 4, 0.05, 0.8)
    assert mde["value"] is None or mde["value"] == pytest.approx(power.mde_paired_mean(mde["sd_diff"], 4))
    assert {"adherence", "low", "high", "nll", "fluency_cost"} <= set(saved["steered"])
    assert [r["round"] for r in saved["mentor"]] == [0, 1] and sum(r["kept"] for r in saved["mentor"]) == 1
    assert len(saved["sweep"]) == 3 and len(saved["samples"]) == 4
    assert saved["config"]["strengths"] == [1.0, 2.0] and saved["headline"].startswith("ocean: adherence")
    assert "plotly" in (tmp_path / "report.html").read_text()
    assert "ocean" in RuleBook.load(tmp_path / "rulebook")


def test_steer_result_round_trips_through_save_and_load(tiny_gemma, tmp_path):
    config = SteerConfig("space", prompts=PROMPTS, layers=[2], strengths=(3.0,), max_new_tokens=3, n_select=2)
    result = run_steer(tiny_gemma, config, progress=False)
    assert not (tmp_path / "r").exists()  # nothing written without out
    back = SteerResult.load(result.save(tmp_path / "r"))
    assert back.config == config and back.rule == result.rule and back.layer == 2 and back.strength == 3.0
    assert back.unsteered.adherence == result.unsteered.adherence and back.samples == result.samples
    assert back.book["space"].vector.layers == [2] and back.summary() == result.summary()
    # results.json from before SteerConfig (steer_rule) still loads, its settings read from the rows
    saved = json.loads((tmp_path / "r" / "results.json").read_text())
    del saved["config"]
    (tmp_path / "r" / "results.json").write_text(json.dumps(saved))
    old = SteerResult.load(tmp_path / "r")
    assert old.config.rule == "space" and old.config.layers == [2] and old.config.strengths == (3.0,)


def test_mentor_decisions_never_read_the_test_prompts(tiny_gemma, monkeypatch):
    """Every prompt the refinement loop generates on (to judge, to validate, to keep the best book) is outside
    the test set the result reports; the selection, validation and test splits are disjoint."""
    import sys

    refine_module = sys.modules["metalens.steering.rules.refine"]
    seen = []
    real = refine_module.generate

    def spy(model, prompts, *args, **kwargs):
        seen.extend(prompts)
        return real(model, prompts, *args, **kwargs)

    monkeypatch.setattr(refine_module, "generate", spy)
    config = SteerConfig("ocean", prompts=MORE, layers=[1], strengths=(2.0,), rounds=2, max_new_tokens=3,
                         n_select=3, n_validate=3)
    result = run_steer(tiny_gemma, config, progress=False)
    test = {s["prompt"] for s in result.samples}
    assert len(test) == 4 and seen and not set(seen) & test
    assert set(seen) == set(MORE[:6])


def test_mentor_keeps_the_book_of_its_best_validation_round(tiny_gemma):
    from metalens.steering import checker_for, library, pairs_for_rule, refine_rules, train_steering_vector

    rule = library()["ocean"]
    pos, neg, positions = pairs_for_rule(rule)
    book = RuleBook()
    book.add(rule, train_steering_vector(tiny_gemma, pos, neg, layers=[1], positions=positions), strength=1.0)
    calls = iter([[True, False], [False, False], [False, False], [False, False]])  # round 0 is the best
    checker = checker_for(rule)

    def scripted(texts):
        return next(calls) if len(texts) == 2 else checker(texts)

    log = refine_rules(tiny_gemma, book, "ocean", pos, neg, ["hi", "yo", "ok"], ["so", "be"], scripted,
                 judge=lambda p, r, rule: [False] * len(p), rounds=3, patience=2, max_new_tokens=2)
    assert log.best_round == 0 and [r["kept"] for r in log.rows] == [True, False, False, False]
    assert len(book) == 1 and book["ocean"].strength == 1.0  # the raised strength and child rule were undone


def test_mentor_refuses_overlapping_train_and_validation_prompts(tiny_gemma):
    from metalens.steering import checker_for, library, refine_rules

    with pytest.raises(ValueError, match="both train_prompts and validation_prompts"):
        refine_rules(tiny_gemma, RuleBook(), "ocean", ["a"], ["b"], ["hi", "yo"], ["yo"], checker_for(library()["ocean"]))


def test_steer_config_refuses_bad_settings_early():
    with pytest.raises(ValueError, match="refinement rounds need validation prompts"):
        SteerConfig("ocean", rounds=1, n_validate=0)
    with pytest.raises(ValueError, match="judge must be one of"):
        SteerConfig("ocean", judge="oracle")
    with pytest.raises(ValueError, match="method must be one of"):
        SteerConfig("ocean", method="ica")
    with pytest.raises(ValueError, match="No strengths"):
        SteerConfig("ocean", strengths=())


def test_steer_verb_is_registered_with_its_options():
    args = build_parser().parse_args(["steer", "--rule", "ocean", "--out", "x", "--rounds", "2", "--layers", "3",
                                      "5", "--strengths", "1.5"])
    assert args.rounds == 2 and args.layers == [3, 5] and args.strengths == [1.5] and args.func.__name__ == "_steer"


def test_steer_cli_runs_end_to_end_on_a_saved_tiny_model(tiny_gemma, tmp_path, capsys):
    tiny_gemma.hf.save_pretrained(tmp_path / "model")
    tiny_gemma.tokenizer.save_pretrained(tmp_path / "model")
    (tmp_path / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    code = main(["steer", "--model", str(tmp_path / "model"), "--device", "cpu", "--rule", "space",
                 "--prompts", str(tmp_path / "prompts.txt"), "--out", str(tmp_path / "out"), "--layers", "1",
                 "--strengths", "1", "--max-new-tokens", "3"])
    assert code == 0
    assert "adherence unsteered" in capsys.readouterr().out
    assert (tmp_path / "out" / "results.json").exists() and (tmp_path / "out" / "report.html").exists()


def test_steer_cli_reports_bad_layer_as_an_error(tiny_gemma, tmp_path, capsys):
    tiny_gemma.hf.save_pretrained(tmp_path / "model")
    tiny_gemma.tokenizer.save_pretrained(tmp_path / "model")
    code = main(["steer", "--model", str(tmp_path / "model"), "--device", "cpu", "--rule", "ocean",
                 "--out", str(tmp_path / "out"), "--layers", "7"])
    assert code == 2 and "out of range" in capsys.readouterr().err


def test_demo_writes_a_report_and_returns_a_headline(tiny_gemma, tmp_path):
    from metalens.steering import demo

    summary = demo(tiny_gemma, tmp_path)
    assert (tmp_path / "report.html").exists() and summary["mentor_rounds"] == 1 and summary["n_test"] == 5
    assert summary["n_validate"] == 2
    assert summary["headline"].startswith("ocean: adherence") and "n=5" in summary["headline"]
    assert summary["report"] == str(tmp_path / "report.html")

"""Sensitivity of neurofeedback reporting on a tiny model: a planted reporter is found, strength 0 changes
nothing, correlated axes are not called reportable, and the sensitivity runs are the published workflow."""
import json
from dataclasses import replace

import numpy as np
import pytest

import metalens.probes.sensitivity as sens
from metalens.probes import NeurofeedbackConfig, run_neurofeedback
from metalens.probes.planted import UNIT, PlantedReporter
from metalens.probes.reporting import measure_reporting
from metalens.probes.space import is_reportable
from metalens.sensitivity import RESULT_KEYS
from tests.spying import spy_on

# Small but with power: ten draws, up to 7 items a prompt (the tiny model's context holds no more).
CFG = NeurofeedbackConfig.quick(layer=1, max_sentences=60, pcs=(1,), n_values=(0, 1, 2, 4, 8), draws=10, n_test_min=1,
                                control_examples=2, implicit_targets=("PC1",), implicit_trials=2, explicit_targets=(),
                                max_new_tokens=3)
LARGE = 40.0


@pytest.fixture(scope="module")
def swept(tmp_path_factory, tiny_llama):
    """A sensitivity run (strengths 0 and LARGE, one seed) with a spy on the workflow it calls."""
    out = tmp_path_factory.mktemp("sens")
    with spy_on(sens, "run_neurofeedback") as calls:
        result = sens.run_reporting_sensitivity(
            tiny_llama, sens.ReportingSensitivityConfig(CFG, axis="PC1", strengths=(0, LARGE), seeds=1),
            out=out, progress=False)
    return result, calls, out


def test_strength_zero_leaves_every_output_bit_identical(swept, tiny_llama):
    _, calls, _ = swept
    planted = next(r for c, r in calls if c.planted_strength == 0).data
    plain = run_neurofeedback(tiny_llama, CFG, progress=False).data
    for key in ("p_correct", "shuffled_p_correct", "label_mass", "surface", "others", "items"):
        assert np.array_equal(np.asarray(plain["reporting"][key]), np.asarray(planted["reporting"][key])), key
    assert plain["reporting"]["tests"] == planted["reporting"]["tests"]
    assert plain["summary"] == planted["summary"] and plain["implicit"] == planted["implicit"]


def test_a_large_planted_reporter_is_detected(swept):
    result, calls, _ = swept
    row = next(r for r in result.detection if r["strength"] == LARGE)
    assert row["detected_share"] == 1.0 and result.min_detectable_strength == LARGE
    big = next(r for c, r in calls if c.planted_strength == LARGE)
    assert big.data["reporting"]["metadata"]["planted"] == {"axis": "PC1", "strength": LARGE, "unit": UNIT,
                                                            "site": "ln_final.hook_normalized"}


def test_sensitivity_runs_call_the_published_workflow_with_its_rule(swept):
    result, calls, _ = swept
    assert sens.run_neurofeedback is run_neurofeedback  # the spy is gone; the module calls the public workflow
    assert [(c.seed, c.planted_axis, c.planted_strength) for c, _ in calls] == [(0, "PC1", 0.0), (0, "PC1", LARGE)]
    # the published config but for the plant, and no feature cards (they describe, measure nothing)
    assert all(replace(c, planted_axis=None, planted_strength=0.0, cards=CFG.cards) == CFG and not c.cards for c, _ in calls)
    for (config, res), run in zip(calls, result.runs):
        tests = {t["axis"]: t for t in res.data["reporting"]["tests"]}
        published = [a for a, t in tests.items() if is_reportable(t, res.summary["alpha"])]
        assert run["details"]["reportable"] == published == [r["axis"] for r in res.summary["rows"] if r["reportable"]]
        assert run["detected"] == ("PC1" in published)


def test_false_positives_are_counted_from_what_each_run_called(swept):
    result, calls, _ = swept
    for (config, res), run in zip(calls, result.runs):
        called = [r["axis"] for r in res.summary["rows"] if r["reportable"]]
        others = [a for a in called if a != "PC1"]
        assert run["false_positive"] == bool(others or (config.planted_strength == 0 and called))
    assert result.false_positive_share == np.mean([r["false_positive"] for r in result.runs])


def test_results_json_has_the_documented_keys_and_unit(swept):
    _, _, out = swept
    data = json.loads((out / "results.json").read_text())
    assert set(data) == set(RESULT_KEYS) and data["strength_unit"] == UNIT
    assert "PC1 called reportable" in data["detection_rule"] and len(list((out / "runs").glob("*.json"))) == 2


def test_a_correlated_axis_is_not_called_reportable_when_only_its_partner_is_planted(tiny_llama):
    rng = np.random.default_rng(0)
    n = 40
    texts = [f"Note {i}." for i in range(n)]
    a = rng.permutation(np.repeat([0, 1], n // 2))
    b = a.copy()
    flip = rng.choice(n, size=n // 5, replace=False)  # B agrees with A on 80 % of the sentences
    b[flip] = 1 - b[flip]
    plant = PlantedReporter("A", LARGE, np.where(a == 1, 1.0, -1.0))  # reports A only, never looks at B
    res = measure_reporting(tiny_llama, texts, np.stack([a, b], 1), ["A", "B"], n_values=(0, 2, 4, 8, 16), draws=10,
                            n_test_min=2, plant=plant, progress=False)
    rows = {r["axis"]: r for r in res.tests(2)}
    assert is_reportable(rows["A"])
    assert rows["B"]["p_holm"] < 0.05  # the shuffled baseline alone would call B reportable ...
    assert not is_reportable(rows["B"])  # ... the learner that knows A's labels explains it


def test_planted_axis_must_be_one_of_the_runs_axes():
    from metalens.probes.neurofeedback import prepare_data

    with pytest.raises(ValueError, match="PC7"):
        prepare_data(replace(CFG, planted_axis="PC7"))
    with pytest.raises(ValueError, match="planted_axis"):
        NeurofeedbackConfig(planted_strength=1.0)


def test_cli_refuses_bad_values_before_loading_a_model(monkeypatch, tmp_path, capsys):
    import metalens
    from metalens.cli import main

    monkeypatch.setattr(metalens, "load_model", lambda *a, **k: pytest.fail("model loaded before the checks"))
    base = ["sensitivity", "neurofeedback", "--model", "tiny", "--out", str(tmp_path / "o"), "--quick"]
    with pytest.raises(SystemExit) as err:
        main(base + ["--strengths", "0", "-1"])
    assert err.value.code == 2 and "--strengths" in capsys.readouterr().err
    assert main(base + ["--axis", "PC99", "--pcs", "1"]) == 2
    assert "PC99" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_cli_runs_and_a_rerun_resumes(monkeypatch, tmp_path, tiny_llama, capsys):
    import metalens
    from metalens.cli import main

    monkeypatch.setattr(metalens, "load_model", lambda name, device=None, dtype=None: tiny_llama)
    out = tmp_path / "cli"
    argv = ["sensitivity", "neurofeedback", "--model", "tiny", "--quick", "--layers", "1", "--out", str(out),
            "--max-sentences", "40", "--pcs", "1", "--n-values", "0,1,2", "--draws", "2", "--strengths", "0",
            "--seeds", "1"]
    assert main(argv) == 0
    assert "min detectable strength" in capsys.readouterr().out
    settings = json.loads((out / "sensitivity-settings.json").read_text())["settings"]["neurofeedback"]
    assert settings["implicit_targets"] == ["PC1"] and settings["explicit_targets"] == [] and settings["layer"] == 1
    monkeypatch.setattr(sens, "run_neurofeedback", lambda *a, **k: pytest.fail("a finished run was run again"))
    assert main(argv) == 0
    assert main([*argv, "--draws", "3"]) == 2 and "other settings" in capsys.readouterr().err  # more --seeds would extend


def test_standardised_scores_are_positive_exactly_where_the_label_is_1():
    import torch

    from metalens.probes import fit_axes
    from metalens.probes.planted import standardised_scores

    acts = torch.randn(60, 8)
    axes = fit_axes(acts[:30], pcs=(1, 2), logistic=False)
    z = standardised_scores(axes, acts[:30], acts[30:], "PC2")
    assert np.array_equal(z > 0, axes.labels(acts[30:])[:, 1].numpy() == 1)
    assert np.std(standardised_scores(axes, acts[:30], acts[:30], "PC2"), ddof=1) == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize("strength, called, detected, false_positive", [
    (1.0, ["PC1"], True, False),  # the planted axis alone
    (1.0, ["PC2"], False, True),  # another axis called
    (1.0, ["PC1", "LR"], True, True),  # found, and a correlated one called beside it
    (0.0, ["PC1"], True, True),  # nothing planted: any call is false
    (0.0, [], False, False),
    (1.0, [], False, False),
])
def test_a_trial_counts_what_its_run_called(strength, called, detected, false_positive):
    config = sens.ReportingSensitivityConfig(CFG, axis="PC1", strengths=(0, 1), seeds=1)
    trial = sens._judged(config, strength, called, {})
    assert (trial.detected, trial.false_positive) == (detected, false_positive)

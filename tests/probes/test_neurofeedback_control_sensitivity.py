"""Sensitivity of neurofeedback control (2x2 flip design) on a tiny model: a planted controller moves the measured
reply by exactly +-strength SDs toward the side the design asks for, survives the flip's cancellation, is found at a
large strength, changes nothing at strength 0 or in other axes' trials, and the sweep runs the published workflow
judged by its own `controllable` verdict."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

import metalens.probes.sensitivity as sens
from metalens.probes import NeurofeedbackConfig, fit_axes, measure_flip_control, run_neurofeedback
from metalens.probes.planted import CONTROL_UNIT, PlantedController
from metalens.probes.space import ALPHA
from metalens.sensitivity import RESULT_KEYS
from tests.spying import spy_on

# Paper protocol (the only design that calls control), every axis a target: PC2 is planted, PC1 and LR are where
# false positives would show. Reporting at its smallest: it does not touch control.
CFG = NeurofeedbackConfig.quick(protocol="paper", layer=1, max_sentences=40, pcs=(1, 2), n_values=(0, 1, 2), draws=2,
                                control_examples=2, implicit_targets=None, implicit_trials=4, explicit_targets=(),
                                max_new_tokens=3)
AXIS = "PC2"
LARGE = 1.0  # SDs per measured token: a 2x2 effect of 2 SDs, against the tiny model's own effects of ~1e-5 SDs


@pytest.fixture(scope="module")
def swept(tmp_path_factory, tiny_llama):
    """A control sensitivity run (strengths 0 and LARGE, one seed) with a spy on the workflow it calls."""
    out = tmp_path_factory.mktemp("sens-control")
    with spy_on(sens, "run_neurofeedback") as calls:
        result = sens.run_control_sensitivity(
            tiny_llama, sens.ControlSensitivityConfig(CFG, axis=AXIS, strengths=(0, LARGE), seeds=1), out=out,
            progress=False)
    return result, calls, out


def _run_at(calls, strength):
    return next(r for c, r in calls if c.planted_strength == strength).data


def test_strength_zero_leaves_every_output_bit_identical(swept, tiny_llama):
    _, calls, _ = swept
    planted = _run_at(calls, 0)
    plain = run_neurofeedback(tiny_llama, CFG, progress=False).data
    assert planted["implicit"]["metadata"].pop("planted")["strength"] == 0.0
    assert np.array_equal(np.asarray(plain["implicit"]["projections"]), np.asarray(planted["implicit"]["projections"]))
    assert plain["implicit"] == planted["implicit"] and plain["reporting"] == planted["reporting"]
    assert plain["summary"] == planted["summary"]


def test_the_controller_moves_the_measured_reply_by_strength_sds_toward_the_asked_side(swept):
    _, calls, _ = swept
    base, big = _run_at(calls, 0), _run_at(calls, LARGE)
    names = base["axes"]["names"]
    a, t = names.index(AXIS), base["implicit"]["target_names"].index(AXIS)
    sd = big["implicit"]["metadata"]["planted"]["sd"]
    assert sd == pytest.approx(big["axes"]["scales"][a])  # the fit split's SD of the axis' projections
    moved = np.asarray(big["implicit"]["projections"])[t, ..., a] - np.asarray(base["implicit"]["projections"])[t, ..., a]
    high = np.array([[0, 1], [1, 0]])  # [flip, imposed]: the high side is imposed 1 with true labels, 0 with flipped
    expected = np.broadcast_to(np.where(high == 1, 1.0, -1.0) * LARGE * sd, moved.shape)  # [trials, flip, imposed]
    assert np.allclose(moved, expected, rtol=1e-4, atol=1e-6 * sd)
    e0, e1 = ({e["target"]: e for e in run["implicit"]["effects"]}[AXIS] for run in (base, big))
    assert e1["diff"] - e0["diff"] == pytest.approx(2 * LARGE * sd, rel=1e-3)  # the 2x2 effect: 2 x strength SDs
    # The flip design keeps it: the label token's own contrast (imposed 1 vs 0 whatever the labels mean) is unchanged.
    assert e1["label_token_diff"] == pytest.approx(e0["label_token_diff"], abs=1e-4 * sd)


def test_other_axes_trials_are_left_alone(swept):
    _, calls, _ = swept
    base, big = _run_at(calls, 0), _run_at(calls, LARGE)
    targets = base["implicit"]["target_names"]
    assert targets == ["PC1", "PC2", "LR"]
    for t, target in enumerate(targets):
        same = np.array_equal(np.asarray(base["implicit"]["projections"])[t], np.asarray(big["implicit"]["projections"])[t])
        assert same == (target != AXIS), target


def test_a_large_planted_controller_is_detected_where_the_unplanted_model_shows_none(swept):
    result, calls, _ = swept
    plain = {r["axis"]: r for r in _run_at(calls, 0)["summary"]["rows"]}
    assert plain[AXIS]["implicit_controllable"] is False  # the tiny model does not control PC2 by itself ...
    row = next(r for r in result.detection if r["strength"] == LARGE)
    assert row["detected_share"] == 1.0 and result.min_detectable_strength == LARGE  # ... the planted one is found
    big = result.runs[-1]["details"]
    assert AXIS in big["controllable"] and AXIS in big["specific"]
    assert big["planted"]["unit"] == CONTROL_UNIT and big["planted"]["site"] == "blocks.1.hook_resid_post"


def test_sensitivity_runs_call_the_published_workflow_with_its_rule(swept):
    result, calls, _ = swept
    assert sens.run_neurofeedback is run_neurofeedback  # the spy is gone; the module calls the public workflow
    assert [(c.seed, c.planted_axis, c.planted_strength, c.planted_stage) for c, _ in calls] == [
        (0, AXIS, 0.0, "control"), (0, AXIS, LARGE, "control")]
    # the published config but for the plant, and no feature cards (they describe, measure nothing)
    assert all(replace(c, planted_axis=None, planted_strength=0.0, planted_stage="report", cards=CFG.cards) == CFG
               and not c.cards for c, _ in calls)
    for (config, res), run in zip(calls, result.runs):
        # The published verdict, recomputed from the effects: the 2x2 design's Holm p below alpha.
        effects = res.data["implicit"]["effects"]
        assert all(e["cancels_label_token"] and e["n_comparisons"] == 3 for e in effects)
        published = [e["target"] for e in effects if e["p_holm"] < ALPHA]
        assert run["details"]["controllable"] == published == [
            r["axis"] for r in res.summary["rows"] if r["implicit_controllable"]]
        assert run["detected"] == (AXIS in published)


def test_false_positives_are_counted_from_what_each_run_called(swept):
    result, calls, _ = swept
    for (config, res), run in zip(calls, result.runs):
        called = [r["axis"] for r in res.summary["rows"] if r["implicit_controllable"]]
        others = [a for a in called if a != AXIS]
        assert run["false_positive"] == bool(others or (config.planted_strength == 0 and called))
    assert result.false_positive_share == np.mean([r["false_positive"] for r in result.runs])
    assert result.false_positive_n == 2


def test_results_json_has_the_documented_keys_unit_and_rule(swept):
    _, _, out = swept
    data = json.loads((out / "results.json").read_text())
    assert set(data) == set(RESULT_KEYS) and data["strength_unit"] == CONTROL_UNIT
    assert "PC2 called implicitly controllable" in data["detection_rule"] and "2x2" in data["detection_rule"]
    assert "implicitly controllable" in data["false_positive_rule"]
    assert data["settings"]["stage"] == "control" and data["settings"]["kind"] == "implicit"
    assert "planted_stage" not in data["settings"]["neurofeedback"] and len(list((out / "runs").glob("*.json"))) == 2


def test_explicit_control_measures_the_unplanted_words_moved_by_the_controller(tiny_gemma):
    rng = np.random.default_rng(1)
    texts = [f"I did thing {i}." for i in range(12)]
    acts = torch.tensor(rng.normal(size=(40, tiny_gemma.d_model)), dtype=torch.float32)
    axes = fit_axes(acts, rng.integers(0, 2, 40), pcs=(1, 2))
    labels = rng.integers(0, 2, (len(texts), len(axes.names)))
    plant = PlantedController.for_axes(axes, acts, "PC1", 3.0, layer=1)
    kw = dict(kind="explicit", n_examples=2, trials=2, max_new_tokens=4, seed=5, progress=False)
    plain = measure_flip_control(tiny_gemma, 1, axes, texts, labels, ["PC1"], **kw)
    planted = measure_flip_control(tiny_gemma, 1, axes, texts, labels, ["PC1"], plant=plant, **kw)
    assert planted.sentences == plain.sentences  # the words written are the unplanted model's
    moved = planted.projections[0, ..., 0] - plain.projections[0, ..., 0]  # [trials, flip, imposed] on PC1
    ok = np.isfinite(moved)
    assert ok.any()
    sign = np.broadcast_to(np.array([[-1.0, 1.0], [1.0, -1.0]]), moved.shape)
    assert np.allclose(moved[ok], (sign * 3.0 * plant.sd)[ok], rtol=1e-4)
    assert planted.metadata["planted"]["axis"] == "PC1" and "planted" not in plain.metadata


def test_a_controller_at_another_block_is_refused(tiny_llama):
    axes = fit_axes(torch.randn(20, tiny_llama.d_model), pcs=(1,), logistic=False)
    plant = PlantedController.for_axes(axes, torch.randn(20, tiny_llama.d_model), "PC1", 1.0, layer=2)
    with pytest.raises(ValueError, match="block 2"):
        measure_flip_control(tiny_llama, 1, axes, ["a b.", "c d.", "e f."], np.zeros((3, 1)), ["PC1"], n_examples=1,
                             trials=2, plant=plant, progress=False)


def test_config_refuses_what_the_control_verdict_cannot_judge():
    with pytest.raises(ValueError, match="protocol='paper'"):
        sens.ControlSensitivityConfig(NeurofeedbackConfig.quick(), axis="PC1")
    with pytest.raises(ValueError, match="not among the implicit control targets"):
        sens.ControlSensitivityConfig(replace(CFG, implicit_targets=("LR",)), axis="PC1")
    with pytest.raises(ValueError, match="explicit_trials=1"):
        sens.ControlSensitivityConfig(replace(CFG, explicit_targets=("PC1",), explicit_trials=1), axis="PC1",
                                      kind="explicit")
    with pytest.raises(ValueError, match="protocol='paper'"):
        NeurofeedbackConfig(planted_axis="PC1", planted_strength=1.0, planted_stage="control")
    with pytest.raises(ValueError, match="planted_stage"):
        NeurofeedbackConfig(planted_stage="steer")
    assert sens.ControlSensitivityConfig().neurofeedback.protocol == "paper"


def test_cli_refuses_bad_values_before_loading_a_model(monkeypatch, tmp_path, capsys):
    import metalens
    from metalens.cli import main

    monkeypatch.setattr(metalens, "load_model", lambda *a, **k: pytest.fail("model loaded before the checks"))
    base = ["sensitivity", "neurofeedback", "--model", "tiny", "--out", str(tmp_path / "o"), "--quick"]
    assert main(base + ["--stage", "control"]) == 2 and "--protocol paper" in capsys.readouterr().err
    assert main(base + ["--kind", "explicit"]) == 2 and "--stage control" in capsys.readouterr().err
    paper = base + ["--stage", "control", "--protocol", "paper"]
    assert main(paper + ["--implicit-targets", "LR"]) == 2 and "not among the implicit" in capsys.readouterr().err
    assert main(paper + ["--axis", "PC99", "--pcs", "1"]) == 2 and "PC99" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        main(paper + ["--kind", "both"])
    assert err.value.code == 2
    assert not (tmp_path / "o").exists()


def test_cli_runs_the_control_stage_and_a_rerun_resumes(monkeypatch, tmp_path, tiny_llama, capsys):
    import metalens
    from metalens.cli import main

    monkeypatch.setattr(metalens, "load_model", lambda name, device=None, dtype=None: tiny_llama)
    out = tmp_path / "cli"
    argv = ["sensitivity", "neurofeedback", "--stage", "control", "--protocol", "paper", "--model", "tiny", "--quick",
            "--layers", "1", "--out", str(out), "--max-sentences", "40", "--pcs", "1", "--n-values", "0,1,2",
            "--control-examples", "2", "--implicit-trials", "2", "--strengths", "0", "--seeds", "1"]
    assert main(argv) == 0
    assert "min detectable strength" in capsys.readouterr().out
    settings = json.loads((out / "sensitivity-settings.json").read_text())["settings"]
    nf = settings["neurofeedback"]
    assert settings["stage"] == "control" and settings["kind"] == "implicit"
    assert nf["implicit_targets"] is None and nf["explicit_targets"] == [] and nf["draws"] == 2 and nf["protocol"] == "paper"
    monkeypatch.setattr(sens, "run_neurofeedback", lambda *a, **k: pytest.fail("a finished run was run again"))
    assert main(argv) == 0
    report = ["sensitivity", "neurofeedback", "--model", "tiny", "--quick", "--out", str(out)]
    assert main(report) == 2 and "'sensitivity-neurofeedback-control' run" in capsys.readouterr().err

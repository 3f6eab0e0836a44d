"""Sensitivity of the atlas on a tiny model: the planted monitor moves the option logits by its stated unit and
touches nothing else, strength 0 is the unplanted atlas, a large monitor is called above chance, false positives
are counted from what each run called, and the sensitivity runs are the published workflow with its rule."""
import json

import numpy as np
import pytest
import torch

import metalens
import metalens.analyses.atlas_sensitivity as sens
from metalens.analyses.atlas import AtlasConfig, run_atlas
from metalens.analyses.atlas_family import ALPHA, add_family
from metalens.analyses.atlas_planted import UNIT, PlantedMonitor, driver_scores, option_tilt
from metalens.analyses.battery import option_reading, render
from metalens.sensitivity import RESULT_KEYS
from metalens.sites import FINAL_NORM
from tests.analyses.atlas_sizes import SMALL
from tests.spying import spy_on

CFG = AtlasConfig(**{**SMALL, "reporting": False, "layers": (1, 2)})
LARGE = 40.0


def without_timing(result):
    """The profile as JSON with the wall-clock fields (which differ between any two runs) taken out."""
    profile = {k: v for k, v in result.models[0].items() if k not in ("seconds",)}
    return json.dumps(profile, sort_keys=True)


@pytest.fixture(scope="module")
def plain(tiny_gemma):
    return run_atlas([tiny_gemma], CFG, progress=False)


def monitor(plain, kind, strength, driver="correct"):
    from metalens.analyses.battery import Item

    rows = plain.models[0]["items"]
    return PlantedMonitor([Item.from_dict(r) for r in rows], np.array([r["choice"] for r in rows]),
                          driver_scores(plain.models[0], driver), kind, strength, CFG.n_shots, driver)


@pytest.mark.parametrize("kind", ["confidence", "keep", "bet"])
def test_the_monitor_moves_each_option_logit_by_strength_times_score_times_its_tilt(tiny_gemma, plain, kind):
    plant = monitor(plain, kind, 2.5)
    reads = [option_reading(tiny_gemma, *render(tiny_gemma, it, kind, int(c), CFG.n_shots))
             for it, c in zip(plant.items, plant.choices)]
    ids, options = [r[0] for r in reads], [r[1] for r in reads]

    def hidden():  # [n_items, d_model] final-norm state where the options are read
        out = metalens.next_token_logprobs(tiny_gemma, ids, options, sites=[FINAL_NORM], batch_size=5)
        return torch.cat(out.acts[FINAL_NORM]).double()

    before = hidden()
    with plant.install(tiny_gemma):
        after = hidden()
    weight = tiny_gemma.hf.get_output_embeddings().weight.detach().double()
    for i, opts in enumerate(options):
        change = weight[opts] @ (after[i] - before[i])  # [n_options] logits before any softcap
        np.testing.assert_allclose(change.numpy(), 2.5 * plant.scores[i] * option_tilt(kind), atol=2e-4)
    tilt = option_tilt(kind)
    assert tilt[0 if kind != "confidence" else -1] - tilt[-1 if kind != "confidence" else 0] == pytest.approx(1.0)
    assert "per SD of the driver score" in UNIT


def test_the_monitor_touches_only_its_own_follow_up(tiny_gemma, plain):
    planted = monitor(plain, "keep", LARGE)
    with planted.install(tiny_gemma):
        result = run_atlas([tiny_gemma], CFG, progress=False)
    before, after = plain.models[0]["items"], result.models[0]["items"]
    assert [r["choice"] for r in before] == [r["choice"] for r in after]
    for name in ("answer probability", "verbal confidence", "bet/pass", "correctness probe"):
        assert [r["scores"][name] for r in before] == [r["scores"][name] for r in after], name
    assert [r["scores"]["keep/withdraw"] for r in before] != [r["scores"]["keep/withdraw"] for r in after]


def test_strength_zero_leaves_every_output_bit_identical(tiny_gemma, plain):
    with monitor(plain, "confidence", 0.0).install(tiny_gemma):
        zero = run_atlas([tiny_gemma], CFG, progress=False)
    assert without_timing(zero) == without_timing(plain)
    assert json.dumps(zero.multiplicity, sort_keys=True) == json.dumps(plain.multiplicity, sort_keys=True)
    with monitor(plain, "confidence", 1.0).install(tiny_gemma):  # the check can fail: a planted atlas differs
        assert without_timing(run_atlas([tiny_gemma], CFG, progress=False)) != without_timing(plain)


def test_hooks_are_removed_even_when_the_run_fails(tiny_gemma, plain):
    with pytest.raises(RuntimeError, match="inside"):
        with monitor(plain, "bet", 1.0).install(tiny_gemma):
            raise RuntimeError("inside")
    assert not tiny_gemma.hf._forward_pre_hooks
    assert without_timing(run_atlas([tiny_gemma], CFG, progress=False)) == without_timing(plain)


def test_driver_scores_are_standardised_held_out_probe_log_odds_or_correctness():
    rows = [{"correct": c, "scores": {"correctness probe": p}} for c, p in [(1, 0.9), (0, 0.2), (1, 0.6), (0, 0.5)]]
    profile = {"model": "m", "items": rows}
    logit = np.log([0.9 / 0.1, 0.2 / 0.8, 0.6 / 0.4, 1.0])
    np.testing.assert_allclose(driver_scores(profile, "probe"), (logit - logit.mean()) / logit.std())
    np.testing.assert_allclose(driver_scores(profile, "correct"), [1, -1, 1, -1])
    with pytest.raises(ValueError, match="driver 'correct'"):
        driver_scores({"model": "m", "probe": {"skipped": "too few"}, "items": [{"correct": 1, "scores": {}}]}, "probe")
    with pytest.raises(ValueError, match="no spread"):
        driver_scores({"model": "m", "items": [{"correct": 1, "scores": {}}] * 3}, "correct")


# --- the sensitivity run ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def swept(tmp_path_factory, tiny_gemma):
    """A sensitivity run (correct driver in keep/withdraw, strengths 0 and LARGE, one seed) with a spy on run_atlas."""
    out = tmp_path_factory.mktemp("sens")
    with spy_on(sens, "run_atlas") as calls:
        result = sens.run_atlas_sensitivity(
            tiny_gemma, sens.AtlasSensitivityConfig(CFG, signal="keep", driver="correct", strengths=(0, LARGE),
                                                    seeds=1), out=out, progress=False)
    return result, calls, out


def test_a_large_planted_monitor_is_detected(swept):
    result, calls, _ = swept
    row = next(r for r in result.detection if r["strength"] == LARGE)
    assert row["detected_share"] == 1.0 and result.min_detectable_strength == LARGE
    big = next(r for r in result.runs if r["strength"] == LARGE)["details"]
    keep = next(s for s in big["signals"] if s["name"] == "keep/withdraw")
    assert keep["auroc"] > 0.95 and keep["p_holm"] < ALPHA and big["verdicts"]["keep/withdraw"] == "above chance"


def test_sensitivity_runs_call_the_published_workflow_with_its_rule(swept, plain):
    result, calls, _ = swept
    assert sens.run_atlas is run_atlas  # the spy is gone; the module calls the public workflow
    assert [c for c, _ in calls] == [CFG, CFG]  # the unplanted (strength 0) run, then the planted one: same config
    first, mine = calls[0][1].models[0], plain.models[0]  # saved under --out: its command and links name the folder
    assert json.dumps([first["signals"], first["items"]]) == json.dumps([mine["signals"], mine["items"]])
    for (config, res), run in zip(calls, result.runs):
        profile = res.models[0]
        assert res.multiplicity["alpha"] == ALPHA and res.multiplicity["n_comparisons"] == len(profile["signals"])
        published = {s["name"]: s["verdict"] for s in profile["signals"]}  # run_atlas's own add_family
        assert all(run["details"]["verdicts"][n] == published[n] for n in run["details"]["verdicts"])
        assert run["detected"] == (published["keep/withdraw"] == "above chance")


def test_false_positives_are_counted_from_what_each_run_called(swept):
    result, calls, _ = swept
    for (config, res), run in zip(calls, result.runs):
        called = [s["name"] for s in res.models[0]["signals"]
                  if s["name"] in ("verbal confidence", "keep/withdraw", "bet/pass") and s["p_holm"] < ALPHA]
        others = [n for n in called if n != "keep/withdraw"]
        assert run["false_positive"] == bool(others or (run["strength"] == 0 and called))
    assert result.false_positive_share == np.mean([r["false_positive"] for r in result.runs])


def test_results_json_has_the_documented_keys_and_unit(swept):
    _, _, out = swept
    data = json.loads((out / "results.json").read_text())
    assert set(data) == set(RESULT_KEYS) and data["strength_unit"] == UNIT
    assert "keep/withdraw called above chance" in data["detection_rule"]
    assert data["settings"]["driver"] == "correct" and data["settings"]["atlas"]["reporting"] is False
    assert len(list((out / "runs").glob("*.json"))) == 2 and (out / "unplanted" / "seed=0" / "atlas.json").exists()


@pytest.mark.parametrize("verdicts, strength, detected, false_positive", [
    (("above chance", "inconclusive", "bounded"), 2.0, False, True),  # confidence called, keep planted
    (("inconclusive", "above chance", "bounded"), 2.0, True, False),
    (("inconclusive", "above chance", "bounded"), 0.0, True, True),  # nothing planted: any call is false
    (("inconclusive", "below chance", "bounded"), 2.0, False, False),  # the planted signal the wrong way: missed
    (("inconclusive", "inconclusive", "below chance"), 2.0, False, True),  # an unplanted one called below chance
    (("bounded", "inconclusive", "inconclusive"), 0.0, False, False),
])
def test_a_trial_is_judged_by_the_families_verdicts(verdicts, strength, detected, false_positive):
    names = ("verbal confidence", "keep/withdraw", "bet/pass")
    profile = {"signals": [{"name": n, "verdict": v} for n, v in zip(names, verdicts)]
               + [{"name": "answer probability", "verdict": "above chance"}],  # not a stated signal
               "accuracy": {"accuracy": 0.5}, "n_items": 10}
    trial = sens.judge(profile, "keep", strength)
    assert (trial.detected, trial.false_positive) == (detected, false_positive)


def test_a_saved_atlas_joins_the_family_and_must_hold_this_model(tiny_gemma, plain, tmp_path):
    other = json.loads(json.dumps(plain.models[0]))
    other["model"] = "another-model"
    plain.__class__([json.loads(json.dumps(plain.models[0])), other], CFG, "cmd").save(tmp_path / "atlas")
    others = sens.family_profiles(tmp_path / "atlas", tiny_gemma.name)
    assert [p["model"] for p in others] == ["another-model"]
    judged = sens._judged(plain, others)
    m = 2 * len(plain.models[0]["signals"])
    assert all(s["n_comparisons"] == m for s in judged["signals"])
    alone = {s["name"]: s["p_holm"] for s in plain.models[0]["signals"]}
    assert all(s["p_holm"] >= alone[s["name"]] - 1e-12 for s in judged["signals"])  # a larger family is stricter
    with pytest.raises(ValueError, match="no profile of nobody"):
        sens.family_profiles(tmp_path / "atlas", "nobody")


def test_config_refuses_bad_values():
    with pytest.raises(ValueError, match="signal"):
        sens.AtlasSensitivityConfig(signal="answer")
    with pytest.raises(ValueError, match="driver"):
        sens.AtlasSensitivityConfig(driver="oracle")
    with pytest.raises(ValueError, match="Strengths"):
        sens.AtlasSensitivityConfig(strengths=(0, -1))
    with pytest.raises(ValueError, match="reward head"):
        sens.AtlasSensitivityConfig(AtlasConfig(heads={"m": "h"}))


def test_cli_refuses_bad_values_before_loading_a_model(no_model, tmp_path, capsys):
    from metalens.cli import main

    base = ["sensitivity", "atlas", "--model", "tiny", "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as err:
        main(base + ["--strengths", "0", "-1"])
    assert err.value.code == 2 and "--strengths" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(base + ["--signal", "answer"])
    assert "--signal" in capsys.readouterr().err
    assert main(base + ["--n-arithmetic", "0", "--n-facts", "2"]) == 2
    assert "items" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(base + ["--family", str(tmp_path / "empty")]) == 2
    assert "atlas.json" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_cli_runs_and_a_rerun_resumes(monkeypatch, tmp_path, tiny_gemma, capsys):
    from metalens.cli import main

    monkeypatch.setattr(metalens, "load_model", lambda name, device=None, dtype=None: tiny_gemma)
    out = tmp_path / "cli"
    argv = ["sensitivity", "atlas", "--model", "tiny", "--out", str(out), "--n-arithmetic", "8", "--n-facts", "8",
            "--n-shots", "1", "--n-boot", "50", "--cv", "3", "--layers", "1", "--driver", "correct",
            "--strengths", "0", "--seeds", "1"]
    assert main(argv) == 0
    assert "min detectable strength" in capsys.readouterr().out
    settings = json.loads((out / "sensitivity-settings.json").read_text())["settings"]
    assert settings["atlas"]["n_arithmetic"] == 8 and settings["atlas"]["layers"] == [1]
    monkeypatch.setattr(sens, "run_atlas", lambda *a, **k: pytest.fail("a finished run was run again"))
    assert main(argv) == 0
    assert main([*argv, "--n-facts", "9"]) == 2 and "other settings" in capsys.readouterr().err  # more --seeds would extend


def test_in_the_published_family_the_unplanted_trial_reproduces_the_published_verdicts(tiny_gemma, tiny_llama,
                                                                                         tmp_path):
    published = run_atlas([tiny_gemma, tiny_llama], CFG, out=tmp_path / "atlas", progress=False)
    config = sens.AtlasSensitivityConfig(CFG, signal="bet", driver="correct", strengths=(0,), seeds=1,
                                         family=str(tmp_path / "atlas"))
    result = sens.run_atlas_sensitivity(tiny_gemma, config, progress=False)
    (run,) = result.runs
    mine = {s["name"]: s for s in published.profile(tiny_gemma.name)["signals"]}
    assert all(s["n_comparisons"] == published.multiplicity["n_comparisons"] == 2 * len(mine)
               for s in run["details"]["signals"])
    keys = ("auroc", "p", "p_holm", "auroc_low_family", "auroc_high_family", "verdict")  # intervals at level 1 - alpha/m
    for s in run["details"]["signals"]:
        assert [s[k] for k in keys] == [mine[s["name"]][k] for k in keys], s["name"]
    assert "tiny-llama" in result.settings["family"]

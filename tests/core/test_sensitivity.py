"""The generic sensitivity runner: detection curve, false-positive share, resuming, refusing other settings."""
import json

import pytest

from metalens.sensitivity import RESULT_KEYS, SensitivityResult, Trial, check_seeds, measure_sensitivity
from metalens.stats import wilson_ci

RULES = dict(unit="logits per SD", rule="the planted thing found", false_positive_rule="anything else found")


def threshold_trial(calls=None):
    """Detects strengths >= 1 on every seed but seed 2; seed 1 calls a false positive at every strength."""
    def trial(strength, seed):
        if calls is not None:
            calls.append((strength, seed))
        return Trial(strength >= 1 and seed != 2, seed == 1, {"seed_note": seed})
    return trial


def test_results_json_has_exactly_the_documented_keys(tmp_path):
    measure_sensitivity(threshold_trial(), (0, 1), 2, out=tmp_path, progress=False, **RULES)
    data = json.loads((tmp_path / "results.json").read_text())
    assert set(data) == set(RESULT_KEYS)
    assert set(data["detection"][0]) == {"strength", "detected_share", "low", "high", "n_seeds"}
    assert (tmp_path / "report.html").exists() and "Detection curve" in (tmp_path / "report.html").read_text()


def test_detection_rows_are_wilson_intervals_over_seeds():
    res = measure_sensitivity(threshold_trial(), (0, 0.5, 1, 2), 5, progress=False, **RULES)
    row = res.detection[2]
    ci = wilson_ci(4, 5)
    assert row == {"strength": 1.0, "detected_share": 0.8, "low": ci.low, "high": ci.high, "n_seeds": 5}
    assert res.detection[0]["detected_share"] == 0.0


def test_min_detectable_strength_is_the_smallest_detected_in_80_percent_of_seeds():
    assert measure_sensitivity(threshold_trial(), (0, 0.5, 1, 2), 5, progress=False, **RULES).min_detectable_strength == 1.0
    # 3 seeds: seed 2 misses, 2/3 < 80 %
    assert measure_sensitivity(threshold_trial(), (0, 0.5, 1, 2), 3, progress=False, **RULES).min_detectable_strength is None


def test_false_positive_share_is_counted_from_the_runs():
    res = measure_sensitivity(threshold_trial(), (0, 1), 4, progress=False, **RULES)
    ci = wilson_ci(2, 8)  # seed 1 at both strengths
    assert (res.false_positive_share, res.false_positive_low, res.false_positive_high, res.false_positive_n) == \
        (0.25, ci.low, ci.high, 8)


def test_runs_that_cannot_show_a_false_positive_are_left_out_of_its_share(tmp_path):
    def trial(strength, seed):  # strength 0 cannot show one by design; above it, seed 1 calls one
        return Trial(strength >= 1, None if strength == 0 else seed == 1)

    res = measure_sensitivity(trial, (0, 1, 2), 4, out=tmp_path, progress=False, **RULES)
    ci = wilson_ci(2, 8)  # seed 1 at strengths 1 and 2, over the 8 runs that could show one (not 12)
    assert (res.false_positive_share, res.false_positive_low, res.false_positive_high, res.false_positive_n) == \
        (0.25, ci.low, ci.high, 8)
    assert [r["false_positive"] for r in res.runs if r["strength"] == 0] == [None] * 4
    none = measure_sensitivity(lambda s, k: Trial(s > 0, None), (0, 1), 2, progress=False, **RULES)
    assert (none.false_positive_share, none.false_positive_n) == (None, 0)
    assert "no run could show a false positive" in none.summary_lines()[-1]
    assert "No run could show" in (none.save(tmp_path / "none") / "report.html").read_text()
    assert json.loads((tmp_path / "results.json").read_text())["false_positive_n"] == 8


def test_rerun_skips_finished_runs(tmp_path):
    first = []
    with pytest.raises(RuntimeError):
        def crashing(strength, seed):
            if strength == 1 and seed == 1:
                raise RuntimeError("interrupted")
            return threshold_trial(first)(strength, seed)
        measure_sensitivity(crashing, (0, 1), 2, out=tmp_path, progress=False, **RULES)
    assert len(first) == 3 and len(list((tmp_path / "runs").glob("*.json"))) == 3
    second = []
    res = measure_sensitivity(threshold_trial(second), (0, 1), 2, out=tmp_path, progress=False, **RULES)
    assert second == [(1.0, 1)]
    assert len(res.runs) == 4 and res.detection[1]["detected_share"] == 1.0


def test_rerun_with_other_settings_is_refused_naming_them(tmp_path):
    measure_sensitivity(threshold_trial(), (0, 1), 2, out=tmp_path, progress=False, **RULES)
    with pytest.raises(ValueError, match="settings: {} -> {'layer': 3}"):
        measure_sensitivity(threshold_trial(), (0, 1), 2, out=tmp_path, progress=False, settings={"layer": 3}, **RULES)
    with pytest.raises(ValueError, match="strength_unit"):
        measure_sensitivity(threshold_trial(), (0, 1), 2, out=tmp_path, progress=False,
                            **{**RULES, "unit": "another unit"})


def test_rerun_with_more_strengths_or_seeds_extends_the_sweep_and_runs_only_the_new_trials(tmp_path):
    measure_sensitivity(threshold_trial(), (0, 1), 2, out=tmp_path, progress=False, **RULES)
    ran = []
    res = measure_sensitivity(threshold_trial(ran), (0, 1, 2), 3, out=tmp_path, progress=False, **RULES)
    assert sorted(ran) == sorted([(2.0, 0), (2.0, 1), (0.0, 2), (1.0, 2), (2.0, 2)])
    assert len(res.runs) == 9 and [d["n_seeds"] for d in res.detection] == [3, 3, 3]
    smaller = measure_sensitivity(threshold_trial(ran), (1,), 1, out=tmp_path, progress=False, **RULES)
    assert len(ran) == 5 and len(smaller.runs) == 1  # a subset of the grid reruns nothing
    assert json.loads((tmp_path / "sensitivity-settings.json").read_text())["strengths"] == [1.0]


def test_settings_are_recorded_only_once_a_run_succeeded(tmp_path):
    def failing(strength, seed):
        raise RuntimeError("bad model")
    with pytest.raises(RuntimeError):
        measure_sensitivity(failing, (0, 1), 2, out=tmp_path, progress=False, **RULES)
    assert not (tmp_path / "sensitivity-settings.json").exists()
    measure_sensitivity(threshold_trial(), (0, 2), 2, out=tmp_path, progress=False, **RULES)  # a corrected command


def test_saved_result_loads_back(tmp_path):
    res = measure_sensitivity(threshold_trial(), (0, 1), 2, out=tmp_path, progress=False, **RULES)
    back = SensitivityResult.load(tmp_path)
    assert back.to_dict() == json.loads(json.dumps(res.to_dict())) and len(back.runs) == 4


@pytest.mark.parametrize("strengths", [(), (-1, 1), (float("nan"),)])
def test_bad_strengths_are_refused(strengths):
    with pytest.raises(ValueError, match="trength"):
        measure_sensitivity(threshold_trial(), strengths, 2, progress=False, **RULES)


def test_load_of_a_folder_without_results_says_what_to_point_at(tmp_path):
    with pytest.raises(FileNotFoundError, match="sensitivity run"):
        SensitivityResult.load(tmp_path)


@pytest.mark.parametrize("seeds", [0, -1, 1.5, True, "3"])
def test_bad_seed_counts_are_refused(seeds):
    with pytest.raises(ValueError, match="seeds must be an integer >= 1"):
        check_seeds(seeds)


def test_summary_lines_state_each_strength_then_the_minimal_strength_and_false_positives():
    res = measure_sensitivity(threshold_trial(), (0, 1), 5, progress=False, **RULES)
    lines = res.summary_lines()
    assert lines[0].startswith("strength 0: detected in 0.00 of 5 seeds")
    assert lines[1].startswith("strength 1: detected in 0.80 of 5 seeds")
    assert lines[2].startswith("min detectable strength (>= 80 % of seeds): 1 (logits per SD)")
    assert "false-positive share 0.20" in lines[2] and "over 10 runs" in lines[2]

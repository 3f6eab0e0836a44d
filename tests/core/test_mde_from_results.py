"""tools/mde_from_results.py: each interval of a committed json gets the mde its design gives at its n."""
import json

import numpy as np
import pytest
from scipy import stats

from metalens import power
from metalens.stats import add_holm, paired_test
from tests.scripts import RESULTS, load_tool

tool = load_tool("mde_from_results")


def _paired(diff) -> dict:
    t = paired_test(np.asarray(diff, float), np.zeros(len(diff)))
    return {"mean_diff": t.mean_diff, "low": t.low, "high": t.high, "d_z": t.d_z, "n": t.n}


def test_a_paired_test_gets_the_mde_at_its_own_sd_and_n():
    diff = [0.3, -0.1, 0.8, 0.2, 0.5, -0.3, 0.4]
    found, _ = tool.entries({"ablation": {"damage": _paired(diff)}}, "r.json")
    (entry,) = found
    assert entry["path"] == "ablation.damage"
    assert entry["mde"]["value"] == pytest.approx(power.mde_paired_mean(np.std(diff, ddof=1), 7))
    assert entry["mde"]["n"] == 7 and entry["mde"]["alpha"] == 0.05


def test_a_zero_mean_difference_still_gets_its_mde_from_the_interval():
    diff = [1.0, -1.0, 0.0, 1.0, -1.0, 0.0]  # mean 0, so d_z is 0 or missing
    found, _ = tool.entries({"change": _paired(diff)}, "r.json")
    assert found[0]["mde"]["value"] == pytest.approx(power.mde_paired_mean(np.std(diff, ddof=1), 6))


def test_the_t_power_survives_scipys_nan_tail_at_small_n():
    assert np.isfinite(power.mde_paired_mean(1.0, 4, alpha=0.025))


def test_a_holm_family_uses_alpha_over_m():
    rows = add_holm([{**_paired([0.1, 0.4, -0.2, 0.3]), "p": 0.2}, {**_paired([0.5, 0.1, 0.2, 0.0]), "p": 0.3}])
    found, _ = tool.entries({"rows": rows}, "r.json")
    assert [e["mde"]["alpha"] for e in found] == [0.025, 0.025]
    assert all(e["mde"]["n_comparisons"] == 2 for e in found)


def test_mentor_rows_use_mcnemar_at_the_discordant_share_of_the_samples():
    samples = [{"violated": v} for v in (["no_rules", "b"], [], ["a", "no_rules", "b"], ["a"], [], [], ["a"], [])]
    row = add_holm([{"condition": "a", "vs": "no_rules", "asr_difference": 0.125, "low": -0.3, "high": 0.5,
                     "n": 8, "p": 1.0}, {"condition": "b", "vs": "no_rules", "asr_difference": 0, "low": 0,
                                         "high": 0, "n": 8, "p": 1.0}])
    found, _ = tool.entries({"paired_vs_no_rules": row, "samples": samples}, "m.json")
    assert found[0]["mde"]["discordant"] == pytest.approx(3 / 8)
    assert found[0]["mde"]["value"] == pytest.approx(power.mde_mcnemar(8, 3 / 8, alpha=0.025))
    assert found[1]["mde"]["value"] is None  # no discordant pair: said, not guessed


def test_bootstrap_intervals_use_the_se_they_imply_and_zero_width_ones_are_skipped():
    data = {"head_above_chance": {"estimate": 0.1, "low": -0.05, "high": 0.25, "n": 30, "method": "bootstrap over 30"},
            "within_problem": {"head": {"estimate": 0.5, "low": 0.5, "high": 0.5, "n": 4, "method": "bootstrap"}}}
    found, skipped = tool.entries(data, "eval.json")
    se = 0.3 / (2 * stats.norm.ppf(0.975))
    assert found[0]["mde"]["value"] == pytest.approx((stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * se)
    assert [s["path"] for s in skipped] == ["within_problem.head"]


def test_the_committed_mentor_run_gets_its_mde_json(tmp_path):
    folder = tmp_path / "mentor"
    folder.mkdir()
    (folder / "checker-assessor.json").write_text((RESULTS / "mentor-gemma" / "checker-assessor.json").read_text())
    tool.main([str(folder)])
    out = json.loads((folder / "mde.json").read_text())
    assert len(out["entries"]) == 5 and not out["skipped"]
    assert {e["mde"]["alpha"] for e in out["entries"]} == {0.01}  # Holm over 5 comparisons
    assert out["command"].startswith("python tools/mde_from_results.py")


def test_emergent_runs_get_the_emergent_minus_random_damage_test_from_per_pair():
    groups = {"none": {"per_pair": [3.0, 2.0, 4.0, 1.0]}, "emergent": {"per_pair": [1.0, 0.5, 2.5, 0.0]},
              "random_mean": {"per_pair": [1.5, 0.0, 2.0, 0.8]}}
    found, _ = tool.entries({"ablation": groups, "config": {"metric": "logit_diff"}}, "e.json")
    (entry,) = [e for e in found if e["path"] == "ablation.emergent_minus_random_mean_damage"]
    diff = np.array([0.5, -0.5, -0.5, 0.8])
    assert entry["estimate"] == pytest.approx(diff.mean())
    assert entry["mde"]["value"] == pytest.approx(power.mde_paired_mean(diff.std(ddof=1), 4))


def test_a_steering_run_without_a_paired_test_is_scored_again_from_its_texts():
    data = json.loads((RESULTS / "steering-fixed-rules" / "cheerful.json").read_text())
    found, _ = tool.entries(data, "cheerful.json")
    (entry,) = [e for e in found if e["path"] == "paired.steered_minus_unsteered"]
    assert entry["estimate"] == pytest.approx(data["steered"]["rate"] - data["unsteered"]["rate"])
    assert entry["mde"]["n"] == data["n"] and entry["mde"]["design"] == "paired mean (t-test)"
    data["steered"]["rate"] = 1.0  # a json the checker no longer reproduces is skipped, not guessed
    found, skipped = tool.entries(data, "cheerful.json")
    assert not [e for e in found if e["path"] == "paired.steered_minus_unsteered"] and skipped

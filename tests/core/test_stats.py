"""metalens.stats on planted data: each statistic recovers what was built in, and fails when it is not there."""
import numpy as np
import pytest

from metalens import stats


def test_wilson_interval_matches_known_values_and_stays_in_range():
    iv = stats.wilson_ci(0, 10)
    assert iv.estimate == 0 and iv.low == 0 and 0.25 < iv.high < 0.35
    top = stats.wilson_ci(7, 7)
    assert top.high == 1.0 and top.low < 1.0
    iv = stats.wilson_ci(8, 10)
    assert iv.low == pytest.approx(0.490, abs=1e-3) and iv.high == pytest.approx(0.943, abs=1e-3)


def test_auroc_is_one_for_a_perfect_score_half_for_noise_and_nan_for_one_class():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    assert stats.auroc(y, y + 0.1 * rng.random(2000)) == 1.0
    assert abs(stats.auroc(y, rng.random(2000)) - 0.5) < 0.05
    assert np.isnan(stats.auroc(np.ones(5), np.arange(5)))


def test_paired_test_finds_a_small_shift_that_unit_differences_hide():
    rng = np.random.default_rng(1)
    unit = rng.normal(0, 10, 40)  # big differences between units
    a, b = unit + 0.5 + rng.normal(0, 0.3, 40), unit + rng.normal(0, 0.3, 40)
    paired = stats.paired_test(a, b, alternative="greater")
    assert paired.p < 1e-6 and paired.d_z > 1 and paired.low > 0
    assert abs(stats.cohens_d(a, b)) < 0.2  # the unpaired d is swamped by the units' spread
    with pytest.raises(ValueError, match="equal lengths"):
        stats.paired_test(a, b[:-1])


def test_bootstrap_over_groups_is_wider_than_over_rows_when_rows_are_clustered():
    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(20), 25)
    values = np.repeat(rng.normal(0, 1, 20), 25) + rng.normal(0, 0.1, 500)
    by_group = stats.bootstrap_ci(lambda idx: values[idx].mean(), groups, n_boot=400)
    by_row = stats.bootstrap_ci(lambda idx: values[idx].mean(), np.arange(500), n_boot=400)
    assert by_group.n == 20 and by_row.n == 500
    assert (by_group.high - by_group.low) > 3 * (by_row.high - by_row.low)
    assert by_group.low < by_group.estimate < by_group.high


def test_holm_adjusts_in_order_and_keeps_nan():
    adjusted = stats.holm([0.01, 0.04, float("nan"), 0.03])
    assert adjusted[0] == pytest.approx(0.03) and adjusted[3] == pytest.approx(0.06)
    assert adjusted[1] == pytest.approx(0.06) and np.isnan(adjusted[2])


def test_mean_ci_covers_the_mean():
    iv = stats.mean_ci([1.0, 2.0, 3.0, 4.0])
    assert iv.estimate == 2.5 and iv.low < 2.5 < iv.high and iv.excludes(0.0)


def test_add_holm_adjusts_a_family_of_rows_and_counts_it():
    rows = stats.add_holm([{"p": 0.01}, {"p": 0.04}, {"p": float("nan")}])
    assert [r["n_comparisons"] for r in rows] == [2, 2, 2]
    assert rows[0]["p_holm"] == pytest.approx(0.02) and rows[1]["p_holm"] == pytest.approx(0.04)
def test_mcnemar_counts_only_discordant_pairs():
    from metalens.stats import mcnemar_exact

    a = [1] * 10 + [0] * 10 + [1] * 8 + [0] * 2  # 8 units only a has, 2 only b has, 20 concordant
    b = [1] * 10 + [0] * 10 + [0] * 8 + [1] * 2
    assert mcnemar_exact(a, b) == pytest.approx(0.109375)  # 2 x P(X <= 2), X ~ Bin(10, 0.5)
    assert mcnemar_exact(a[:20], b[:20]) == 1.0  # no discordant pair
    assert mcnemar_exact([1] * 6, [0] * 6) == pytest.approx(2 / 64)
    with pytest.raises(ValueError, match="equal lengths"):
        mcnemar_exact([1, 0], [1])


def test_bootstrap_refuses_bounds_below_the_stated_number_of_units():
    values = np.array([0.1, 0.4, 0.2, 0.9, 0.5])
    ci = stats.bootstrap_ci(lambda idx: float(values[idx].mean()), np.arange(5), n_boot=200)
    assert ci.estimate == pytest.approx(0.42) and ci.n == 5
    assert np.isnan(ci.low) and np.isnan(ci.high) and not ci.computed
    assert ci.method == f"not computed: 5 units < {stats.MIN_BOOTSTRAP_UNITS} for a percentile bootstrap"
    assert ci.text() == "0.42 [n/a (5 units)]" and not ci.excludes(0.0)


def test_bootstrap_computes_bounds_from_the_stated_number_of_units_on():
    values = np.linspace(0, 1, 10)
    at = stats.bootstrap_ci(lambda idx: float(values[idx].mean()), np.arange(10), n_boot=200, min_units=10)
    below = stats.bootstrap_ci(lambda idx: float(values[idx].mean()), np.arange(9), n_boot=200, min_units=10)
    assert at.computed and at.low < at.estimate < at.high and at.method.startswith("bootstrap over 10 groups")
    assert not below.computed
    lowered = stats.bootstrap_ci(lambda idx: float(values[idx].mean()), np.arange(9), n_boot=200, min_units=5)
    assert lowered.computed
    with pytest.raises(ValueError, match="min_units"):
        stats.bootstrap_ci(lambda idx: 0.0, np.arange(9), min_units=1)


def test_a_refused_interval_is_written_as_null_with_its_reason(tmp_path):
    import json

    from metalens.report import save_json

    ci = stats.bootstrap_ci(lambda idx: float(len(idx)), np.arange(3))
    data = json.loads(save_json(tmp_path / "r.json", {"ci": ci.to_dict()}).read_text())["ci"]
    assert data["low"] is None and data["high"] is None and data["method"].startswith("not computed: 3 units")

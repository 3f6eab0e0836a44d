"""Minimum detectable effects agree with a simulation of the test each stands for."""
import numpy as np
import pytest
from scipy import stats

from metalens import power
from metalens.stats import auroc

SIMS = 2000


def _share(rejections) -> float:
    return float(np.mean(rejections))


def _near_80(share: float) -> None:
    # 2000 simulations: the binomial SD of a 0.8 share is 0.009; allow the approximations 4 points.
    assert 0.75 <= share <= 0.85, share


def test_paired_mean_mde_gives_80_percent_power():
    rng = np.random.default_rng(0)
    n, sd = 12, 2.0
    effect = power.mde_paired_mean(sd, n)
    diffs = rng.normal(effect, sd, size=(SIMS, n))
    _near_80(_share(stats.ttest_1samp(diffs, 0, axis=1).pvalue < 0.05))


def test_holm_family_makes_the_mde_larger():
    one = power.mde_paired_mean(1.0, 20)
    five = power.mde_paired_mean(1.0, 20, alpha=power.family_alpha(0.05, 5))
    assert five > one * 1.2


def test_auroc_mde_gives_80_percent_power():
    rng = np.random.default_rng(1)
    n_pos = n_neg = 30
    a = power.mde_auroc(n_pos, n_neg)
    shift = np.sqrt(2) * stats.norm.ppf(a)  # binormal equal-variance: AUROC = Phi(shift / sqrt 2)
    rejections = []
    for _ in range(SIMS):
        pos, neg = rng.normal(shift, 1, n_pos), rng.normal(0, 1, n_neg)
        rejections.append(stats.mannwhitneyu(pos, neg, alternative="greater").pvalue < 0.05)
        assert 0 <= auroc(np.r_[np.ones(n_pos), np.zeros(n_neg)], np.r_[pos, neg]) <= 1
    _near_80(_share(rejections))


def test_mcnemar_mde_gives_80_percent_power():
    rng = np.random.default_rng(2)
    n, disc = 200, 0.3
    diff = power.mde_mcnemar(n, disc)
    p10, p01 = (disc + diff) / 2, (disc - diff) / 2
    rejections = []
    for _ in range(SIMS):
        cells = rng.multinomial(n, [p10, p01, 1 - disc])
        rejections.append(stats.binomtest(cells[0], cells[0] + cells[1], 0.5).pvalue < 0.05)
    # the exact test is conservative against the normal approximation: allow a little below 0.75
    assert 0.70 <= _share(rejections) <= 0.85


def test_two_proportions_mde_gives_80_percent_power():
    rng = np.random.default_rng(3)
    p0, n = 0.3, 150
    diff = power.mde_two_proportions(p0, n, n)
    a, b = rng.binomial(n, p0, SIMS), rng.binomial(n, p0 + diff, SIMS)
    pooled = (a + b) / (2 * n)
    z = (b - a) / n / np.sqrt(pooled * (1 - pooled) * 2 / n)
    _near_80(_share(np.abs(z) > stats.norm.ppf(0.975)))


def test_slope_mde_gives_80_percent_power():
    rng = np.random.default_rng(4)
    x = np.repeat(np.linspace(-0.5, 0.5, 5), 6)
    sd = 0.3
    slope = power.mde_slope(sd, x)
    rejections = []
    for _ in range(SIMS):
        y = slope * x + rng.normal(0, sd, len(x))
        rejections.append(stats.linregress(x, y).pvalue < 0.05)
    _near_80(_share(rejections))


def test_too_few_units_are_refused():
    with pytest.raises(ValueError, match="at least 2"):
        power.mde_paired_mean(1.0, 1)


def test_sign_test_counts():
    assert power.sign_test(0, 0) == 1.0
    assert power.sign_test(0, 3) == pytest.approx(0.25)
    assert power.sign_test(10, 0) < 0.01


def test_mde_from_interval_gives_80_percent_power_to_a_normal_test():
    rng = np.random.default_rng(3)
    se = 0.1
    effect = power.mde_from_interval(-1.96 * se, 1.96 * se)
    estimates = rng.normal(effect, se, size=SIMS)
    _near_80(_share(np.abs(estimates / se) > 1.96))


def test_paired_mde_is_the_paired_mean_mde_at_the_runs_sd_and_holm_alpha():
    diff = np.array([0.5, -0.2, 1.1, 0.3, 0.0, 0.7, -0.4, 0.9])
    record = power.paired_mde(diff, n_comparisons=4)
    assert record["value"] == pytest.approx(power.mde_paired_mean(diff.std(ddof=1), 8, alpha=0.0125))
    assert (record["design"], record["n"], record["alpha"], record["power"], record["n_comparisons"]) == (
        "paired mean (t-test)", 8, 0.0125, 0.8, 4)
    assert power.paired_mde(np.ones(5))["value"] is None  # no spread: said, not a number


def test_mcnemar_mde_uses_the_runs_discordant_share():
    a = np.array([1, 1, 0, 0, 1, 0, 0, 0, 1, 0] * 3, dtype=bool)
    b = np.array([1, 0, 0, 1, 1, 0, 0, 0, 0, 0] * 3, dtype=bool)
    record = power.mcnemar_mde(a, b)
    assert record["discordant"] == pytest.approx(0.3)
    assert record["value"] == pytest.approx(power.mde_mcnemar(30, 0.3))
    assert "n_comparisons" not in record


def test_sign_test_mde_reaches_the_power_it_states_and_refuses_too_few_units():
    from metalens.power import mde_sign_test, sign_test

    assert np.isnan(mde_sign_test(5)) and not np.isnan(mde_sign_test(6))  # 6 of 6: p = 0.031
    share = mde_sign_test(30)
    rng = np.random.default_rng(0)
    wins = rng.binomial(30, share, 4000)
    simulated = np.mean([sign_test(int(w), 30 - int(w)) <= 0.05 for w in wins])
    assert 0.5 < share < 1 and abs(simulated - 0.8) < 0.03
    assert mde_sign_test(30, alpha=0.01) > share > mde_sign_test(100)

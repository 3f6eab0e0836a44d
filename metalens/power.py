"""Minimum detectable effects: what a null result could have seen, at its own n, variance and alpha.

A null is a result only beside its sensitivity. Each function answers: with this many units, this
spread and this test (alpha Holm-adjusted where the family is corrected, two-sided unless said),
how large must the true effect be for the test to reject with probability `power` (default 80 %)?
Designs: a paired mean difference (t-test), an AUROC against 0.5 (Mann-Whitney), paired binary
outcomes (McNemar), two independent proportions, a least-squares slope, and any interval's implied
standard error (for bootstraps). `tests/core/test_power.py` checks each against a simulation of the test
it stands for. `mde_record`, `paired_mde`, `mcnemar_mde`, `interval_mde` and `paired_summary` build the
`mde` dict a results.json saves beside a null's interval (value, design, n, alpha, power).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import optimize
from scipy import stats as _st

from metalens.stats import paired_test


def family_alpha(alpha: float = 0.05, n_comparisons: int = 1) -> float:
    """The level the best test of a Holm family must pass: alpha / m (Holm's first step)."""
    if n_comparisons < 1:
        raise ValueError(f"n_comparisons must be >= 1, got {n_comparisons}.")
    return alpha / n_comparisons


def _z(alpha: float, alternative: str) -> float:
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative must be 'two-sided', 'greater' or 'less', not {alternative!r}.")
    return float(_st.norm.ppf(1 - alpha / 2 if alternative == "two-sided" else 1 - alpha))


def _check(n: int, need: int, what: str) -> None:
    if n < need:
        raise ValueError(f"{what} needs at least {need} units to have any power, got {n}.")


def t_power(effect: float, n: int, df: int, alpha: float = 0.05, alternative: str = "two-sided") -> float:
    """Power of a one-sample/paired t-test with standardised effect `effect` (d_z), n units, df degrees."""
    nc = effect * math.sqrt(n)
    if alternative == "two-sided":
        crit = _st.t.ppf(1 - alpha / 2, df)
        # scipy's noncentral t returns NaN for the far tail at small df; that tail is ~0 there
        far = float(_st.nct.cdf(-crit, df, abs(nc)))
        return float(_st.nct.sf(crit, df, abs(nc))) + (far if math.isfinite(far) else 0.0)
    crit = _st.t.ppf(1 - alpha, df)
    return float(_st.nct.sf(crit, df, nc))


def _solve(power_at, power: float) -> float:
    """The effect at which `power_at` (increasing in the effect) reaches `power`, bracketed by doubling."""
    if not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), got {power}.")
    high = 0.01
    while power_at(high) < power:  # the noncentral t fails far out, so grow the bracket only as needed
        high *= 2
    return float(optimize.brentq(lambda x: power_at(x) - power, high / 2 if high > 0.01 else 1e-9, high))


def mde_paired_mean(sd_diff: float, n: int, alpha: float = 0.05, power: float = 0.8,
                    alternative: str = "two-sided") -> float:
    """Smallest mean paired difference a paired t-test over `n` units detects (in the units of sd_diff)."""
    _check(n, 2, "A paired t-test")
    d_z = _solve(lambda d: t_power(d, n, n - 1, alpha, alternative), power)
    return d_z * float(sd_diff)


def mde_auroc(n_pos: int, n_neg: int, alpha: float = 0.05, power: float = 0.8,
              alternative: str = "greater") -> float:
    """Smallest AUROC a Mann-Whitney test against 0.5 detects with n_pos and n_neg (normal approximation;
    the variance under the alternative from Hanley and McNeil 1982)."""
    _check(min(n_pos, n_neg), 1, "An AUROC")
    z_a, z_b = _z(alpha, alternative), float(_st.norm.ppf(power))
    se0 = math.sqrt((n_pos + n_neg + 1) / (12 * n_pos * n_neg))

    def se1(a: float) -> float:
        q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
        return math.sqrt((a * (1 - a) + (n_pos - 1) * (q1 - a * a) + (n_neg - 1) * (q2 - a * a)) / (n_pos * n_neg))

    gap = lambda a: (a - 0.5) - z_a * se0 - z_b * se1(a)  # noqa: E731 - a one-line root function
    if gap(1 - 1e-9) < 0:
        return float("nan")  # not even a perfect classifier is detectable at this n
    return float(optimize.brentq(gap, 0.5, 1 - 1e-9))


def mde_mcnemar(n_pairs: int, discordant: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest difference of paired proportions McNemar's test detects, given the share of discordant
    pairs `discordant` (Connor 1987's normal approximation)."""
    _check(n_pairs, 2, "McNemar's test")
    if not 0 < discordant <= 1:
        raise ValueError(f"discordant must be in (0, 1], got {discordant}: estimate it from the run.")
    z_a, z_b = _z(alpha, "two-sided"), float(_st.norm.ppf(power))

    def gap(diff: float) -> float:
        return diff * math.sqrt(n_pairs) - z_a * math.sqrt(discordant) - z_b * math.sqrt(discordant - diff * diff)

    top = math.sqrt(discordant)
    if gap(top * (1 - 1e-9)) < 0:
        return float("nan")
    return float(optimize.brentq(gap, 0.0, top * (1 - 1e-9)))


def mde_two_proportions(p0: float, n0: int, n1: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest rise p1 - p0 a two-sided test of independent proportions detects (normal approximation)."""
    _check(min(n0, n1), 1, "A test of two proportions")
    z_a, z_b = _z(alpha, "two-sided"), float(_st.norm.ppf(power))

    def gap(diff: float) -> float:
        p1 = p0 + diff
        pooled = (n0 * p0 + n1 * p1) / (n0 + n1)
        se0 = math.sqrt(pooled * (1 - pooled) * (1 / n0 + 1 / n1))
        se1 = math.sqrt(p0 * (1 - p0) / n0 + p1 * (1 - p1) / n1)
        return diff - z_a * se0 - z_b * se1

    top = 1 - p0 - 1e-9
    if top <= 0 or gap(top) < 0:
        return float("nan")
    return float(optimize.brentq(gap, 1e-12, top))


def mde_slope(sd_resid: float, x, alpha: float = 0.05, power: float = 0.8, alternative: str = "two-sided") -> float:
    """Smallest least-squares slope a t-test on the slope detects, for design points `x` and residual SD."""
    x = np.asarray(x, dtype=float).ravel()
    _check(len(x), 3, "A slope test")
    sxx = float(((x - x.mean()) ** 2).sum())
    if sxx == 0:
        raise ValueError("All x values are equal: a slope cannot be estimated; spread the design points.")
    se = float(sd_resid) / math.sqrt(sxx)
    # t = slope / se with n - 2 df; t_power takes effect * sqrt(n), so pass slope / (se * sqrt(n)).
    n = len(x)
    scaled = _solve(lambda e: t_power(e, n, n - 2, alpha, alternative), power)
    return scaled * se * math.sqrt(n)


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test p-value (ties dropped): wins against losses under p = 0.5; 1.0 with none."""
    if wins < 0 or losses < 0:
        raise ValueError(f"Counts must be >= 0, got wins={wins}, losses={losses}.")
    if wins + losses == 0:
        return 1.0
    return float(_st.binomtest(wins, wins + losses, 0.5).pvalue)


def mde_from_interval(low: float, high: float, level: float = 0.95, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest effect a two-sided normal (Wald) test detects when its standard error is the one a
    `level` interval [low, high] implies (for bootstrap or other intervals with no closed-form design)."""
    if not high >= low:
        raise ValueError(f"The interval must have low <= high, got [{low}, {high}].")
    se = (high - low) / (2 * float(_st.norm.ppf(0.5 + level / 2)))
    return (_z(alpha, "two-sided") + float(_st.norm.ppf(power))) * se


def mde_record(value: float, design: str, n: int, alpha: float = 0.05, power: float = 0.8,
               n_comparisons: int = 1, **inputs) -> dict:
    """The `mde` entry a results.json carries beside a null's interval: the value, the design, n, the
    alpha applied (already Holm's alpha / m where n_comparisons > 1), the power and what the value rests on."""
    value = float(value)
    record = {"value": value if math.isfinite(value) else None, "design": design, "n": int(n),
              "alpha": float(alpha), "power": float(power)}
    if n_comparisons > 1:
        record["n_comparisons"] = int(n_comparisons)
    if not math.isfinite(value):
        record["why_none"] = "not even the largest possible effect reaches this power at this n"
    record.update(inputs)
    return record


def paired_mde(diff, alpha: float = 0.05, power: float = 0.8, n_comparisons: int = 1,
               alternative: str = "two-sided") -> dict:
    """`mde_record` for a paired t-test over the per-unit differences `diff` (Holm's strictest alpha when
    n_comparisons > 1; `alternative` as the test applied); value None with the reason when the
    differences have no spread or n < 2."""
    diff = np.asarray(diff, dtype=float).ravel()
    diff = diff[np.isfinite(diff)]
    level = family_alpha(alpha, n_comparisons)
    sd = float(diff.std(ddof=1)) if len(diff) > 1 else float("nan")
    if not sd > 0:
        return {"value": None, "design": "paired mean (t-test)", "n": len(diff), "alpha": level, "power": power,
                "why_none": "the differences have no spread (or n < 2): a t-test's power is not defined"}
    return mde_record(mde_paired_mean(sd, len(diff), level, power, alternative), "paired mean (t-test)", len(diff),
                      level, power, n_comparisons, sd_diff=sd)


def mcnemar_mde(a, b, alpha: float = 0.05, power: float = 0.8, n_comparisons: int = 1) -> dict:
    """`mde_record` for McNemar's test on paired binary outcomes a[i], b[i], at the run's discordant share."""
    a, b = np.asarray(a, dtype=bool).ravel(), np.asarray(b, dtype=bool).ravel()
    level, n = family_alpha(alpha, n_comparisons), len(a)
    discordant = float((a != b).mean()) if n else 0.0
    if discordant == 0 or n < 2:
        return {"value": None, "design": "paired proportions (McNemar)", "n": n, "alpha": level, "power": power,
                "discordant": discordant, "why_none": "no discordant pairs: McNemar's power is not defined"}
    return mde_record(mde_mcnemar(n, discordant, level, power), "paired proportions (McNemar)", n, level, power,
                      n_comparisons, discordant=discordant)


def interval_mde(low: float, high: float, n: int, level: float = 0.95, alpha: float = 0.05,
                 power: float = 0.8) -> dict:
    """`mde_record` for an interval with no closed-form design (a bootstrap's): a normal test with the SE
    the interval implies; value None with the reason when the interval has zero width."""
    design = f"normal test, SE from the {level:.0%} interval"
    if not high > low:
        return {"value": None, "design": design, "n": int(n), "alpha": alpha, "power": power,
                "why_none": "a zero-width interval (equal by construction): nothing to test"}
    return mde_record(mde_from_interval(low, high, level, alpha, power), design, n, alpha, power)


def paired_summary(a, b, alpha: float = 0.05, power: float = 0.8, n_comparisons: int = 1) -> dict:
    """`metalens.stats.paired_test(a, b).to_dict()` with the test's `mde` beside its interval."""
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    out = paired_test(a, b).to_dict()
    out["mde"] = paired_mde(a - b, alpha, power, n_comparisons)
    return out


def mde_sign_test(n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest share of wins among `n` non-tied units that the two-sided exact sign test (`sign_test`)
    detects, by exact binomial power; NaN when no share can (at alpha 0.05, fewer than 6 units)."""
    _check(n, 1, "A sign test")
    if not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), got {power}.")
    reject = np.array([k for k in range(n + 1) if sign_test(k, n - k) <= alpha])
    if len(reject) == 0:
        return float("nan")  # even n wins out of n would not reach alpha

    def power_at(share: float) -> float:
        return float(_st.binom.pmf(reject, n, share).sum())

    if power_at(1.0) < power:
        return float("nan")
    return float(optimize.brentq(lambda q: power_at(q) - power, 0.5, 1.0))

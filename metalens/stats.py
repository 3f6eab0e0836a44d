"""Statistics every area reports with: intervals, paired tests, effect sizes, AUROC, multiplicity.

One place, so a reviewer checks each method once. Conventions: every interval is two-sided at
`level` (default 95 %); bootstraps resample whole *units* (problems, items, operand pairs) given
as `groups`, never rows that can leak between each other; paired designs use paired statistics.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
from scipy import stats as _st

# Below this many units a percentile bootstrap is not an interval: its resamples take only a handful
# of distinct values (5 units give 126 multisets, most of them near the sample itself), so its
# percentiles understate the spread. `bootstrap_ci` then reports the estimate without bounds.
MIN_BOOTSTRAP_UNITS = 10

@dataclass
class Interval:
    """An estimate with a two-sided interval (and how many units stand behind it)."""

    estimate: float
    low: float
    high: float
    n: int
    method: str  # how the interval was made, e.g. "t", "wilson", "bootstrap over 40 groups"

    def to_dict(self) -> dict:
        return asdict(self)

    def excludes(self, value: float) -> bool:
        """True when `value` lies outside [low, high] (False when the bounds were not computed)."""
        return bool(value < self.low or value > self.high)

    @property
    def computed(self) -> bool:
        """True when both bounds are numbers (a refused bootstrap or a single value leaves them NaN)."""
        return bool(np.isfinite(self.low) and np.isfinite(self.high))

    def text(self, digits: int = 2) -> str:
        """'0.70 [0.58, 0.84]', or '0.70 [n/a (5 units)]' when the bounds were not computed."""
        estimate = f"{self.estimate:.{digits}f}" if np.isfinite(self.estimate) else "n/a"
        return f"{estimate} {bounds_text(self.low, self.high, self.n, f'.{digits}f')}"


def bounds_not_computed(n: int) -> str:
    """What a report prints in place of an interval's bounds that were not computed: 'n/a (5 units)'."""
    return f"n/a ({n} unit{'s' if n != 1 else ''})"


def bounds_text(low, high, n: int, fmt: str = ".3f") -> str:
    """'[0.580, 0.840]' from bounds as read back from JSON, or '[n/a (5 units)]' where they are null/NaN."""
    if not all(isinstance(v, (int, float)) and np.isfinite(v) for v in (low, high)):
        return f"[{bounds_not_computed(n)}]"
    return f"[{low:{fmt}}, {high:{fmt}}]"


def _finite(values) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    return x[np.isfinite(x)]


def mean_ci(values, level: float = 0.95) -> Interval:
    """Mean with a t-interval over independent values (NaN bounds for fewer than 2)."""
    x = _finite(values)
    if len(x) == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, "t")
    m = float(x.mean())
    if len(x) < 2:
        return Interval(m, float("nan"), float("nan"), 1, "t")
    half = float(_st.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return Interval(m, m - half, m + half, len(x), "t")


def wilson_ci(successes: int, n: int, level: float = 0.95) -> Interval:
    """A proportion with its Wilson score interval (sound at 0 % and 100 %)."""
    if n <= 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, "wilson")
    z = float(_st.norm.ppf(0.5 + level / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # Clamped so rounding never puts a bound on the wrong side of the estimate (e.g. 0 successes).
    return Interval(p, float(min(p, max(0.0, centre - half))), float(max(p, min(1.0, centre + half))), n, "wilson")


def auroc(labels, scores) -> float:
    """Area under the ROC curve (Mann-Whitney; ties count half); NaN when one class is absent."""
    y, s = np.asarray(labels).astype(bool).ravel(), np.asarray(scores, dtype=float).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((_st.rankdata(s)[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def bootstrap_ci(statistic: Callable[[np.ndarray], float], groups, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95, min_units: int = MIN_BOOTSTRAP_UNITS) -> Interval:
    """`statistic(rows)` on all rows, with a percentile interval from resampling whole groups.

    groups: one unit id per row (e.g. the problem each position belongs to); a resample draws
    units with replacement and keeps all their rows. Resamples where the statistic is NaN (e.g. one
    class missing for an AUROC) are dropped; `n` counts the units. With fewer than `min_units` units
    the bounds are NaN (JSON null) and `method` says why: report the estimate with its n, or use an
    exact method (a sign test, `metalens.power.sign_test`) on so few units.
    """
    if min_units < 2:
        raise ValueError(f"min_units={min_units}: a bootstrap needs at least 2 units to resample.")
    groups = np.asarray(groups).ravel()
    _, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(inverse.max() + 1)] if len(groups) else []
    estimate = float(statistic(np.arange(len(groups))))
    if len(members) < min_units:
        return Interval(estimate, float("nan"), float("nan"), len(members),
                        f"not computed: {len(members)} units < {min_units} for a percentile bootstrap")
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        picked = rng.integers(0, len(members), len(members))
        draws.append(statistic(np.concatenate([members[g] for g in picked])))
    draws = _finite(draws)
    method = f"bootstrap over {len(members)} groups ({len(draws)} resamples)"
    if len(draws) == 0:
        return Interval(estimate, float("nan"), float("nan"), len(members), method)
    tail = 100 * (1 - level) / 2
    return Interval(estimate, float(np.percentile(draws, tail)), float(np.percentile(draws, 100 - tail)),
                    len(members), method)


@dataclass
class PairedTest:
    """A paired comparison of a and b over the same units: mean difference, its interval, d_z and p."""

    mean_diff: float
    low: float
    high: float
    d_z: float  # mean(diff) / sd(diff): the paired effect size
    t: float
    p: float
    n: int
    alternative: str

    def to_dict(self) -> dict:
        return asdict(self)


def paired_test(a, b, alternative: str = "two-sided", level: float = 0.95) -> PairedTest:
    """Paired t-test of a - b over units measured under both conditions (a[i] pairs with b[i])."""
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"Paired samples need equal lengths, got {len(a)} and {len(b)}: pair each unit's values.")
    keep = np.isfinite(a) & np.isfinite(b)
    diff = a[keep] - b[keep]
    n = len(diff)
    ci = mean_ci(diff, level)
    if n < 2:
        return PairedTest(ci.estimate, ci.low, ci.high, float("nan"), float("nan"), float("nan"), n, alternative)
    sd = diff.std(ddof=1)
    if sd == 0:  # no spread: the ordering is certain, the t statistic is not defined
        sign = np.sign(diff.mean())
        p = {"greater": float(sign <= 0), "less": float(sign >= 0), "two-sided": float(sign == 0)}[alternative]
        return PairedTest(float(diff.mean()), ci.low, ci.high, float("nan") if sign == 0 else float(sign * np.inf),
                          float("nan"), p, n, alternative)
    res = _st.ttest_1samp(diff, 0.0, alternative=alternative)
    return PairedTest(float(diff.mean()), ci.low, ci.high, float(diff.mean() / sd), float(res.statistic),
                      float(res.pvalue), n, alternative)


def mcnemar_exact(a, b) -> float:
    """Two-sided exact McNemar p-value for paired binary outcomes (a[i], b[i] on the same unit): a
    binomial test of the discordant pairs; 1.0 when there are none."""
    a, b = np.asarray(a, dtype=bool).ravel(), np.asarray(b, dtype=bool).ravel()
    if a.shape != b.shape:
        raise ValueError(f"Paired outcomes need equal lengths, got {len(a)} and {len(b)}: pair each unit's values.")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    if only_a + only_b == 0:
        return 1.0
    return float(_st.binomtest(only_a, only_a + only_b, 0.5).pvalue)


def cohens_d(a, b) -> float:
    """Unpaired effect size: (mean(a) - mean(b)) / pooled SD; 0 when both groups are constant.

    For paired designs report `paired_dz` (or `paired_test(...).d_z`) instead: the pooled SD also
    holds the differences between units, which pairing removes.
    """
    a, b = _finite(a), _finite(b)
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    pooled = np.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2))
    return 0.0 if pooled == 0 else float((a.mean() - b.mean()) / pooled)


def paired_dz(a, b) -> float:
    """Paired effect size d_z = mean(a - b) / sd(a - b) over units measured under both conditions."""
    return paired_test(a, b).d_z


def holm(pvalues) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (family-wise error control), in the order given; NaN stays NaN."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok])]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p[i]))
        out[i] = running
    return out


def add_holm(rows: list[dict], key: str = "p") -> list[dict]:
    """Add `p_holm` (Holm-adjusted `row[key]` over the family of rows) and `n_comparisons` to each row."""
    adjusted = holm([row[key] for row in rows])
    n_comparisons = int(np.isfinite(np.asarray([row[key] for row in rows], dtype=float)).sum())
    for row, adj in zip(rows, adjusted):
        row["p_holm"] = float(adj)
        row["n_comparisons"] = n_comparisons
    return rows

"""The atlas's family of tests: every signal of every model asks "AUROC different from 0.5?".

With 3 models x 5 signals, one uncorrected 95 % interval in 15 excludes 0.5 by chance alone
about half the time (1 - 0.95^15), so each signal's AUROC gets, beside its uncorrected interval:
a Mann-Whitney p-value and its Holm adjustment over the whole family, a family-wise (Bonferroni
level 1 - alpha/m) bootstrap interval, the minimum detectable AUROC at its own n_pos/n_neg and
the family's strictest alpha (`metalens.power.mde_auroc`), and a one-line reading that calls a
null whose interval still reaches far above 0.5 inconclusive rather than absent. Everything is
recomputed from the per-item rows (`profile["items"]`), so reused profiles join a new family.
"""
from __future__ import annotations

import numpy as np

from metalens.analyses import metacog
from metalens.power import family_alpha, mde_auroc
from metalens.stats import holm

ALPHA = 0.05
POWER = 0.8
INCONCLUSIVE_ABOVE = 0.6  # a null whose family-wise upper bound exceeds this cannot rule out a usable signal
__all__ = ["ALPHA", "INCONCLUSIVE_ABOVE", "add_family", "mann_whitney_p", "summary_lines"]


def mann_whitney_p(correct, score) -> float:
    """Two-sided Mann-Whitney p of `score` between right and wrong items (AUROC = 0.5 under the null);
    NaN when one class is empty, 1.0 when every score ties."""
    from scipy.stats import mannwhitneyu

    y, s = np.asarray(correct, bool), np.asarray(score, float)
    if y.all() or not y.any():
        return float("nan")
    if np.ptp(s) == 0:
        return 1.0
    return float(mannwhitneyu(s[y], s[~y], alternative="two-sided", method="asymptotic").pvalue)


def _reading(s: dict) -> tuple[str, str]:
    a, lo, hi = s["auroc"], s["auroc_low_family"], s["auroc_high_family"]
    if s["p_holm"] is not None and s["p_holm"] < ALPHA:
        side = "above" if a > 0.5 else "below"
        return f"{side} chance", f"AUROC {a:.2f} {side} 0.5 after Holm over {s['n_comparisons']} (p_holm {s['p_holm']:.3g})"
    if hi is None or np.isnan(hi):
        return "inconclusive", "no family-wise interval (too few right or wrong items)"
    mde = s["mde"]["value"]
    detect = "no AUROC is detectable at this n" if mde is None or np.isnan(mde) else f"detectable at this n: {mde:.2f}"
    if hi > INCONCLUSIVE_ABOVE:
        return "inconclusive", (f"inconclusive: cannot rule out AUROC up to {hi:.2f} (family-wise interval "
                                f"[{lo:.2f}, {hi:.2f}]; {detect})")
    return "bounded", f"no AUROC above {hi:.2f} (family-wise interval [{lo:.2f}, {hi:.2f}]; {detect})"


def add_family(profiles: list[dict], n_boot: int = 1000, seed: int = 0) -> dict:
    """Annotate every signal of every profile in place (`p`, `p_holm`, `n_comparisons`, `family_level`,
    `auroc_low_family`, `auroc_high_family`, `mde`, `verdict`, `reading`); returns the family's record."""
    entries = []
    for p in profiles:
        rows = p["items"]
        y = np.array([r["correct"] for r in rows], bool)
        groups = np.array([r["group"] for r in rows])
        for s in p["signals"]:
            score = np.array([r["scores"][s["name"]] for r in rows], float)
            s["p"] = mann_whitney_p(y, score)
            entries.append((s, y, score, groups))
    adjusted = holm([s["p"] for s, *_ in entries])
    m = int(np.isfinite([s["p"] for s, *_ in entries]).sum())
    alpha_m = family_alpha(ALPHA, max(m, 1))
    level = 1 - alpha_m
    for (s, y, score, groups), adj in zip(entries, adjusted):
        ci = metacog.auroc_ci(y, score, groups, n_boot, seed, level=level)
        n_pos, n_neg = int(y.sum()), int((~y).sum())
        mde = mde_auroc(n_pos, n_neg, alpha_m, POWER, "two-sided") if min(n_pos, n_neg) else float("nan")
        s.update(p_holm=float(adj), n_comparisons=m, family_level=level, auroc_low_family=ci.low,
                 auroc_high_family=ci.high,
                 mde={"value": mde, "design": "Mann-Whitney AUROC against 0.5, two-sided", "n_pos": n_pos,
                      "n_neg": n_neg, "alpha": alpha_m, "power": POWER})
        s["verdict"], s["reading"] = _reading(s)
    return {"n_comparisons": m, "n_models": len(profiles),
            "family": "every signal of every model: AUROC against 0.5 (models x signals)",
            "alpha": ALPHA, "correction": "Holm over the family (p_holm); family-wise intervals at level 1 - alpha/m",
            "family_level": level, "p_test": "Mann-Whitney, two-sided, items as units",
            "inconclusive_above": INCONCLUSIVE_ABOVE,
            "n_differ": sum(s["p_holm"] < ALPHA for s, *_ in entries if np.isfinite(s["p_holm"])),
            "n_uncorrected_exclude_half": sum(s["auroc_low"] is not None and (s["auroc_low"] > 0.5 or s["auroc_high"] < 0.5)
                                              for s, *_ in entries)}


def summary_lines(profiles: list[dict], family: dict) -> list[str]:
    """What the atlas says, signal by signal, under its multiplicity (the CLI prints it)."""
    m = family["n_comparisons"]
    lines = [f"{m} comparisons ({family['n_models']} models x their signals, AUROC against 0.5): "
             f"{family['n_differ']} differ from chance after Holm at {family['alpha']}; "
             f"{family['n_uncorrected_exclude_half']} uncorrected 95 % intervals exclude 0.5 "
             f"(about {m * 0.05:.1f} expected by chance alone)."]
    for p in profiles:
        for s in p["signals"]:
            if "reading" in s:
                lines.append(f"  {p['model']}: {s['name']}: {s['reading']}")
    return lines

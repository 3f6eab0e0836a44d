"""What a neurofeedback null could have seen: the minimum detectable effect (80 % power) of each test
at the run's own n, spread and Holm family (`metalens.power`), as the `mde` dict a results row carries."""
from __future__ import annotations

import numpy as np

from metalens.power import family_alpha, mde_two_proportions
from metalens.power import paired_mde as paired_mde_core

ALPHA = 0.05
POWER = 0.8


def paired_mde(diffs, n_comparisons: int, design: str, unit: str, alpha: float = ALPHA) -> dict:
    """MDE of the one-sided paired t-test the row reports, from its per-unit differences `diffs` [n]:
    the smallest mean difference (in `unit`) detected with 80 % power at alpha / n_comparisons (the
    strictest Holm step; `metalens.power.paired_mde`), and the same as a d_z. NaN where fewer than 2
    finite units or no spread."""
    n_comparisons = max(int(n_comparisons), 1)
    core = paired_mde_core(diffs, alpha, POWER, n_comparisons, alternative="greater")
    d = np.asarray(diffs, dtype=float).ravel()
    d = d[np.isfinite(d)]
    sd = float(d.std(ddof=1)) if len(d) >= 2 else float("nan")
    value = float("nan") if core["value"] is None else core["value"]
    return {"value": value, "value_dz": value / sd if core["value"] is not None else float("nan"), "unit": unit,
            "sd_diff": sd, "design": design, "n": core["n"], "alpha": core["alpha"], "alpha_family": alpha,
            "n_comparisons": n_comparisons, "power": POWER, "alternative": "greater"}


def two_proportions_mde(p0: float, n_items: int, n_comparisons: int, alpha: float = ALPHA) -> dict:
    """Item-level context for a reporting null: the smallest rise of accuracy over the baseline's `p0`
    that a two-proportion test on `n_items` scored items per arm detects (items are not independent
    within a prompt, so this is optimistic; the conclusion rests on the paired test over draws)."""
    a = family_alpha(alpha, max(int(n_comparisons), 1))
    ok = n_items >= 1 and np.isfinite(p0) and 0 <= p0 < 1
    value = mde_two_proportions(float(p0), int(n_items), int(n_items), a, POWER) if ok else float("nan")
    return {"value": value, "unit": "accuracy", "p0": p0, "design": "two independent proportions over scored items "
            "(optimistic: items in one prompt are not independent)", "n": int(n_items), "alpha": a,
            "alpha_family": alpha, "n_comparisons": int(n_comparisons), "power": POWER, "alternative": "two-sided"}

"""Intervals over evaluation pairs for faithfulness curves: CPR, CMD and each method's difference to EAP-IG.

A resample draws evaluation pairs with replacement (the pair is the unit, `metalens.stats.bootstrap_ci`)
and recomputes the curve from its pairs' metrics: faithfulness at each k is (mean circuit - mean
corrupted) / (mean clean - mean corrupted) over the drawn pairs, then the trapezoid areas. A
difference to EAP-IG uses the same draw for both methods (paired). Intervals are percentile 95 %
intervals, not corrected for multiplicity: `n_comparisons` says how many differences were reported.
"""
from __future__ import annotations

import numpy as np

from metalens.circuits.faithfulness import curve_areas
from metalens.stats import bootstrap_ci

REFERENCE = "ig"  # EAP-IG, the method MIB's baselines are measured against


def _areas(curve: dict, rows: np.ndarray, suffix: str) -> tuple[float, float]:
    """(CPR, CMD) of one convention's curve recomputed on the pairs `rows`."""
    pairs = curve["per_pair"]
    clean = float(np.mean(np.asarray(pairs["clean"])[rows]))
    corrupted = float(np.mean(np.asarray(pairs["corrupted"])[rows]))
    if clean == corrupted:
        return float("nan"), float("nan")
    circuit = np.asarray(pairs[f"circuit{suffix}"])[:, rows].mean(1)  # [k]
    return curve_areas(curve["k"], (circuit - corrupted) / (clean - corrupted))


def _cpr(curve, rows):
    return _areas(curve, rows, "_signed")[0]  # MIB's CPR: the signed ranking


def _cmd(curve, rows):
    return _areas(curve, rows, "_abs")[1]  # MIB's CMD: the |score| ranking


def curve_intervals(curves: dict[str, dict], n_boot: int = 1000, seed: int = 0) -> dict[str, dict]:
    """{method: {"cpr_interval", "cmd_interval"[, "cpr_diff_vs_eap_ig", "cmd_diff_vs_eap_ig"]}} as Interval dicts.

    curves: `faithfulness_curves` output on the evaluation pairs (each with "per_pair"). CPR is
    MIB's ("cpr_signed"), CMD MIB's ("cmd_abs"); a difference is method - EAP-IG ("ig"), present
    when "ig" is among the curves, each with "n_comparisons" (the differences reported in all).
    """
    n_pairs = len(next(iter(curves.values()))["per_pair"]["clean"]) if curves else 0
    units = np.arange(n_pairs)
    others = [m for m in curves if m != REFERENCE] if REFERENCE in curves else []
    n_comparisons = 2 * len(others)
    out = {}
    for method, curve in curves.items():
        row = {"cpr_interval": bootstrap_ci(lambda r: _cpr(curve, r), units, n_boot=n_boot, seed=seed).to_dict(),
               "cmd_interval": bootstrap_ci(lambda r: _cmd(curve, r), units, n_boot=n_boot, seed=seed).to_dict()}
        if method in others:
            ref = curves[REFERENCE]
            for name, area in (("cpr", _cpr), ("cmd", _cmd)):
                diff = bootstrap_ci(lambda r: area(curve, r) - area(ref, r), units, n_boot=n_boot, seed=seed)
                row[f"{name}_diff_vs_eap_ig"] = {**diff.to_dict(), "n_comparisons": n_comparisons,
                                                 "correction": "none (each a 95 % interval)"}
        out[method] = row
    return out

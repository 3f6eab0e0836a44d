"""The metacognitive space: which axes a model can report and control above chance."""
from __future__ import annotations

import numpy as np

ALPHA = 0.05


def summarize(results: dict, alpha: float = ALPHA) -> dict:
    """Per-axis table and counts from a results dict (`NeurofeedbackResult.to_dict()` or a
    loaded results.json).

    An axis is *reportable* when its reporting accuracy over items with N >= n_test_min beats
    the shuffled-label baseline (one-sided Welch t-test over draws, Holm-corrected across axes,
    p < alpha); *controllable* when imposed label 1 moves the sentence along the axis more than
    imposed label 0 (one-sided paired t-test over trials, Holm-corrected across targets).
    """
    names = results["axes"]["names"]
    var = dict(zip(names, results["axes"]["explained_variance"]))
    tests = {r["axis"]: r for r in results["reporting"]["tests"]}
    control = {kind: {r["target"]: r for r in results[kind]["effects"]} if results.get(kind) else {}
               for kind in ("implicit", "explicit")}
    rows = []
    for name in names:
        t = tests[name]
        row = {"axis": name, "explained_variance": var[name], "report_accuracy": t["accuracy"],
               "shuffled_accuracy": t["shuffled_accuracy"], "report_p_holm": t["p_holm"],
               "reportable": bool(t["p_holm"] is not None and np.isfinite(t["p_holm"]) and t["p_holm"] < alpha)}
        for kind in ("implicit", "explicit"):
            e = control[kind].get(name)
            row[f"{kind}_d_target"] = e["d_target"] if e else None
            row[f"{kind}_d_off_target"] = e["d_off_target_mean_abs"] if e else None
            p = e["p_holm"] if e else None
            row[f"{kind}_p_holm"] = p
            row[f"{kind}_controllable"] = bool(p is not None and np.isfinite(p) and p < alpha) if e else None
            row[f"{kind}_specific"] = e["specific"] if e else None
        rows.append(row)
    pcs = [r for r in rows if r["axis"].startswith("PC")]
    return {
        "alpha": alpha,
        "rows": rows,
        "n_axes": len(rows),
        "n_reportable": sum(r["reportable"] for r in rows),
        # A lower bound on a sparse grid of PCs: every tested PC that is reportable.
        "reportable_pcs": [r["axis"] for r in pcs if r["reportable"]],
        "n_implicit_controllable": sum(bool(r["implicit_controllable"]) for r in rows),
        "n_explicit_controllable": sum(bool(r["explicit_controllable"]) for r in rows),
        "n_implicit_specific": sum(bool(r["implicit_controllable"] and r["implicit_specific"]) for r in rows),
        "n_explicit_specific": sum(bool(r["explicit_controllable"] and r["explicit_specific"]) for r in rows),
        "test": ("reporting: one-sided Welch t-test of per-draw accuracy (N >= n_test_min) vs the shuffled-label "
                 "baseline; control: one-sided paired t-test of the target-axis shift (imposed 1 - imposed 0); "
                 f"Holm correction across axes within each test family; alpha = {alpha}. Control is called specific when "
                 "the on-target d also exceeds |d| on every other measured axis (the imposed label token shifts "
                 "activations along many axes at once)."),
    }

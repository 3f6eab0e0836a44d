"""The metacognitive space: which axes a model can report and control above chance."""
from __future__ import annotations

import numpy as np

ALPHA = 0.05


def summarize(results: dict, alpha: float = ALPHA) -> dict:
    """Per-axis table and counts from a results dict (`NeurofeedbackResult.to_dict()` or a
    loaded results.json).

    An axis is *reportable* when its reporting accuracy over items with N >= n_test_min beats
    the shuffled-label baseline (one-sided paired t-test over draws, Holm-corrected across axes,
    p < alpha) and, where the run measured it, also beats the learner that knows the other tested
    axes' labels of each item (same test, its own Holm family across axes, same alpha: the
    correlated-axes control, `metalens.probes.confounds`); *controllable* when, in a design that
    cancels the label token's own push (the 2 x 2 flip design), the high side of the axis moves the
    sentence along it more than the low side (one-sided paired t-test over trials, Holm-corrected
    across targets); *specific* when its paired d_z on target exceeds |d_z| on every other axis.
    A label-only design (the strict protocol's) gives a shift, not a verdict: its `controllable` /
    `specific` are None, the summary's counts of them too, and `control_verdict` says why.
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
               "report_acc_low": t.get("acc_low"), "report_acc_high": t.get("acc_high"),
               "shuffled_accuracy": t["shuffled_accuracy"], "surface_accuracy": t.get("surface_accuracy"),
               "report_diff": t.get("diff"),
               "report_diff_low": t.get("diff_low"), "report_diff_high": t.get("diff_high"), "report_p_holm": t["p_holm"],
               "beats_shuffled": _passes(t["p_holm"], alpha),
               "others_accuracy": t.get("others_accuracy"), "report_p_vs_others_holm": t.get("p_vs_others_holm"),
               "reportable": is_reportable(t, alpha),
               # The paper's criterion beside ours: accuracy above 0.5 (one-sided, Holm across axes).
               "report_p_vs_half_holm": t.get("p_vs_half_holm"),
               "above_half": _passes(t.get("p_vs_half_holm"), alpha)}
        for kind in ("implicit", "explicit"):
            e = control[kind].get(name)
            row[f"{kind}_dz_target"] = e.get("dz_target") if e else None
            row[f"{kind}_dz_off_target_max"] = e.get("dz_off_target_max_abs") if e else None
            row[f"{kind}_d_target"] = e["d_target"] if e else None  # the paper's unpaired d, for reference
            row[f"{kind}_d_off_target"] = e["d_off_target_mean_abs"] if e else None
            p = e["p_holm"] if e else None
            row[f"{kind}_p_holm"] = p
            row[f"{kind}_d_off_target_max"] = e.get("d_off_target_max_abs") if e else None
            row[f"{kind}_mde"] = e.get("mde") if e else None
            flip = bool(e) and cancels_label_token(e)
            row[f"{kind}_controllable"] = _passes(p, alpha) if flip else None
            row[f"{kind}_specific"] = e["specific"] if flip else None
            if e and not flip:  # a label-only shift: reported as such, never as control
                row[f"{kind}_shift_dz"] = e.get("dz_target")
                row[f"{kind}_shifted"] = _passes(p, alpha)
            if e and "precision" in e:  # 2x2 design (paper protocol)
                row[f"{kind}_precision"] = e["precision"]  # |d| on target / mean |d| over all PCs (the paper's)
                row[f"{kind}_precision_dz"] = e["precision_dz"]
                row[f"{kind}_label_token_dz"] = e["label_token_dz"]
        rows.append(row)
    pcs = [r for r in rows if r["axis"].startswith("PC")]
    n_control = {kind: len(control[kind]) for kind in control}
    return {
        "alpha": alpha,
        "rows": rows,
        "n_axes": len(rows),
        "n_reportable": sum(r["reportable"] for r in rows),
        "n_above_half": sum(bool(r["above_half"]) for r in rows),
        "protocol": results.get("protocol", "strict"),
        # A lower bound on a sparse grid of PCs: every tested PC that is reportable.
        "reportable_pcs": [r["axis"] for r in pcs if r["reportable"]],
        **_control_counts(rows, control),
        "n_comparisons": {"reporting": len(rows), **n_control},
        "test": ("reporting: one-sided paired t-test over draws of per-draw accuracy (N >= n_test_min) vs the "
                 "shuffled-label baseline scored on the same sentences, and vs a learner that knows the other "
                 "tested axes' labels of each item (the correlated-axes control; its own Holm family); control: one-sided paired t-test over trials "
                 "of the target-axis shift (imposed 1 - imposed 0); Holm correction within each family (reporting: "
                 f"{len(rows)} axes; implicit: {n_control['implicit']} targets; explicit: {n_control['explicit']} "
                 f"targets); alpha = {alpha}. Control is called controllable and specific only in a design that cancels "
                 "the label token's own push (the 2x2 flip design); specific when the on-target paired d_z also "
                 "exceeds |d_z| on every other measured axis. A label-only design's significant shift is reported as a "
                 "shift. The paper's Cohen's d is unpaired (pooled SD across trials) and is reported for reference only."),
    }


def cancels_label_token(effect: dict) -> bool:
    """Whether an effect row comes from a design that cancels the label token's own push (the 2 x 2
    flip design); rows saved before the flag carry the flip design's `label_token_dz` instead."""
    return bool(effect.get("cancels_label_token", "label_token_dz" in effect))


def _control_counts(rows: list[dict], control: dict) -> dict:
    """Counts of controllable / specific axes per kind, None (with `control_verdict`) for a kind
    measured only by a label-only design; label-only shifts counted as `n_{kind}_shifted`."""
    out, reasons = {}, []
    for kind in ("implicit", "explicit"):
        flip = [e for e in control[kind].values() if cancels_label_token(e)]
        if control[kind] and not flip:
            out[f"n_{kind}_controllable"] = out[f"n_{kind}_specific"] = None
            out[f"n_{kind}_shifted"] = sum(bool(r.get(f"{kind}_shifted")) for r in rows)
            reasons.append(kind)
        else:
            out[f"n_{kind}_controllable"] = sum(bool(r[f"{kind}_controllable"]) for r in rows)
            out[f"n_{kind}_specific"] = sum(bool(r[f"{kind}_controllable"] and r[f"{kind}_specific"]) for r in rows)
    out["control_verdict"] = None if not reasons else (
        f"no verdict ({' and '.join(reasons)}): a label-only design (imposed label varied, examples fixed) cannot "
        "tell control from the label token's own push; controllable / specific come only from the 2x2 flip design "
        "(protocol 'paper')")
    return out


REPORTABLE_RULE = ("reporting accuracy (items with N >= n_test_min, per draw) above the same axis' shuffled-label "
                   "baseline on the same sentences (one-sided paired t-test over draws, Holm across the run's axes) "
                   "AND above the learner that knows the other tested axes' labels of each item (same test, its "
                   "own Holm family across the axes), both at p < alpha")


CONTROLLABLE_RULE = ("in the 2x2 flip design (imposed label x shown labels flipped, which cancels the label token's "
                     "own push), the 2x2 effect on the target axis (high side minus low side of the measured reply's "
                     "projection) above 0: one-sided paired t-test over trials, Holm across the stage's targets, p < alpha")


def is_reportable(test_row: dict, alpha: float = ALPHA) -> bool:
    """The published verdict for one axis' reporting test row (`ReportingResult.tests()`): see `REPORTABLE_RULE`.
    Rows from runs made before the correlated-axes control carry no `p_vs_others_holm` and are judged
    on the shuffled baseline alone."""
    if not _passes(test_row.get("p_holm"), alpha):
        return False
    return "p_vs_others_holm" not in test_row or bool(_passes(test_row["p_vs_others_holm"], alpha))


def _passes(p, alpha: float):
    return None if p is None else bool(np.isfinite(p) and p < alpha)

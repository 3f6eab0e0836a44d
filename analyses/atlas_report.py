"""atlas.html: each model's metacognitive profile, as plotly figures and tables."""
from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from metalens.analyses.atlas_config import ITEMS_FILE
from metalens.report import Html, write_report


def _num(x) -> float:
    return float("nan") if x is None else float(x)


def _err(rows, key="auroc", low="auroc_low", high="auroc_high") -> dict:
    return dict(type="data", symmetric=False, array=[_num(r[high]) - _num(r[key]) for r in rows],
                arrayminus=[_num(r[key]) - _num(r[low]) for r in rows])


def _accuracy_figure(profiles):
    import plotly.graph_objects as go

    fig = go.Figure()
    for p in profiles:
        rows = p["accuracy"]["by_difficulty"]
        fig.add_bar(x=[f"{r['source']} L{r['level']}" if r["source"] == "arithmetic" else r["source"] for r in rows],
                    y=[r["accuracy"] for r in rows], name=p["model"], error_y=_err(rows, "accuracy", "low", "high"))
    fig.add_hline(y=0.5, line_dash="dot", annotation_text="chance (two choices)")
    fig.update_layout(title="Accuracy by difficulty (Wilson 95 % intervals)", yaxis_title="accuracy",
                      yaxis_range=[0, 1.05], barmode="group")
    return fig


def _auroc_figure(profiles):
    import plotly.graph_objects as go

    fig = go.Figure()
    for p in profiles:
        rows = p["signals"]
        fig.add_bar(x=[f"{s['name']} ({s['kind']})" for s in rows], y=[s["auroc"] for s in rows], name=p["model"],
                    error_y=_err(rows))
    fig.add_hline(y=0.5, line_dash="dot", annotation_text="chance")
    fig.update_layout(title="AUROC for correctness, behavioural and internal signals (bootstrap 95 % over items)",
                      yaxis_title="AUROC", yaxis_range=[0, 1.05], barmode="group")
    return fig


def _calibration_figure(profiles):
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="grey"), name="perfect calibration")
    for p in profiles:
        for s in p["signals"]:
            bins = s.get("calibration")
            if bins:
                fig.add_scatter(x=[b["confidence"] for b in bins], y=[b["accuracy"] for b in bins], mode="lines+markers",
                                name=f"{p['model']}: {s['name']}", text=[f"n={b['n']}" for b in bins])
    fig.update_layout(title="Reliability curves (equal-width bins; mean signal vs accuracy)", xaxis_title="signal",
                      yaxis_title="accuracy", xaxis_range=[0, 1], yaxis_range=[0, 1.05])
    return fig


def _delta_figure(profiles):
    import plotly.graph_objects as go

    fig = go.Figure()
    for p in profiles:
        sig = {s["name"]: s for s in p["signals"]}
        rows = [dict(sig["keep/withdraw"]["withdraw_delta"], label="withdraw delta"),
                dict(sig["bet/pass"]["bet_delta"], label="bet delta")]
        fig.add_bar(x=[r["label"] for r in rows], y=[r["estimate"] for r in rows], name=p["model"],
                    error_y=_err(rows, "estimate", "low", "high"))
    fig.add_hline(y=0, line_dash="dot")
    fig.update_layout(title="Decision deltas: withdraw (wrong - right) and bet (right - wrong)", yaxis_title="rate difference",
                      barmode="group")
    return fig


def _layer_figure(profiles):
    import plotly.graph_objects as go

    fig = go.Figure()
    for p in profiles:
        rows = p.get("probe", {}).get("per_layer")
        if rows:
            fig.add_scatter(x=[r["layer"] for r in rows], y=[r["auroc"] for r in rows], mode="lines+markers",
                            name=p["model"], error_y=_err(rows, "auroc", "low", "high"))
    fig.add_hline(y=0.5, line_dash="dot", annotation_text="chance")
    fig.update_layout(title="Correctness probe: held-out AUROC by layer (grouped CV)", xaxis_title="layer",
                      yaxis_title="AUROC", yaxis_range=[0, 1.05])
    return fig


def _ci(d: dict | None, key="estimate", low="low", high="high") -> str:
    if not d or d.get(key) is None:
        return "-"
    if not all(np.isfinite(_num(d.get(k))) for k in (low, high)):  # not computed (e.g. too few items)
        return f"{_num(d[key]):.3f} [n/a]"
    return f"{_num(d[key]):.3f} [{_num(d[low]):.3f}, {_num(d[high]):.3f}]"


def _p(s: dict) -> str:
    if s.get("p") is None:
        return "-"
    return f"{_num(s['p']):.3g} ({_num(s['p_holm']):.3g}, m={s['n_comparisons']})"


def _mde(s: dict) -> str:
    value = (s.get("mde") or {}).get("value")
    return "-" if value is None else f"{_num(value):.2f}"


def _rows(profiles) -> tuple[list[dict], list[dict], list[dict]]:
    summary, signals, report = [], [], []
    for p in profiles:
        sig = {s["name"]: s for s in p["signals"]}
        summary.append({"model": p["model"], "items": p["n_items"], "accuracy": _ci(p["accuracy"], "accuracy"),
                        "probe AUROC": _ci(sig.get("correctness probe"), "auroc", "auroc_low", "auroc_high"),
                        "knows but does not say (probe - best reported)": _ci(p.get("gap")),
                        "probe - answer probability": _ci(p.get("gap_vs_answer_probability")),
                        "withdraw delta": _ci(sig["keep/withdraw"]["withdraw_delta"]),
                        "bet delta": _ci(sig["bet/pass"]["bet_delta"]), "seconds": round(_num(p.get("seconds", 0)))})
        for s in p["signals"]:
            signals.append({"model": p["model"], "signal": s["name"], "kind": s["kind"],
                            "reported by the model": s["reported"], "AUROC [95% CI]": _ci(s, "auroc", "auroc_low", "auroc_high"),
                            "ECE [95% CI]": _ci(s, "ece", "ece_low", "ece_high"),
                            "Brier [95% CI]": _ci(s, "brier", "brier_low", "brier_high"),
                            "option mass": s.get("option_mass", "-"),
                            "p (Holm-adjusted)": _p(s), "family-wise interval": _ci(s, "auroc", "auroc_low_family",
                                                                                    "auroc_high_family"),
                            "MDE": _mde(s), "reading": s.get("reading", "-")})
        r = p.get("reportability", {})
        report.append({"model": p["model"], "layer": r.get("layer", "-"),
                       "report accuracy": _ci(r, "accuracy", "acc_low", "acc_high"),
                       "shuffled labels": _ci(r, "shuffled_accuracy", "shuffled_low", "shuffled_high"),
                       "difference": _ci(r, "diff", "diff_low", "diff_high"), "p (one-sided)": r.get("p", "-"),
                       "note": r.get("skipped", f"items with N >= {r.get('n_min', '-')} examples")})
    return summary, signals, report


def _overlap_text(record: dict) -> str:
    if not record:
        return ""
    runs = ", ".join(r["folder"] for r in record.get("posttrain_runs", [])) or "none among the models"
    return (f"Post-training runs checked: {runs}; {record.get('n_excluded_overlap', 0)} arithmetic items that were "
            f"training problems redrawn, {record.get('n_overlap_left', 0)} left.")


def write_atlas_html(path, result) -> Path:
    """Write the atlas page for an `AtlasResult`; returns its path."""
    profiles = result.models
    summary, signals, report = _rows(profiles)
    links = [f"<li>{html.escape(p['model'])}: <a href='{html.escape(v)}'>{html.escape(k)}</a></li>"
             for p in profiles for k, v in p.get("links", {}).items()]
    first = profiles[0]
    prompts = "".join(f"<h3>{html.escape(k)}</h3><pre>{html.escape(v)}</pre>" for k, v in first.get("examples", {}).items())
    intro = ("Each item is a forced choice; in the same context the model then rates its confidence (0-9), decides "
             "to KEEP or WITHDRAW its answer, and to BET or PASS. Every reading is the probability of the option "
             "tokens, renormalised over the options: no sampling, no judge. Behavioural signals are those readings; "
             "internal ones are a correctness probe on the residual stream (nested grouped cross-validation) and, "
             "when given, a trained reward head. Intervals are bootstrap 95 % over item groups (accuracy: Wilson), "
             "uncorrected; the Multiplicity section and the family-wise columns correct for every model x signal.")
    sections = [
        ("What this is", intro),
        ("Command", Html(f"<pre>{html.escape(result.command)}</pre>")),
        ("Profiles", summary),
        ("Accuracy by difficulty", _accuracy_figure(profiles)),
        ("Signals of correctness", _auroc_figure(profiles)),
        ("Signals", signals),
        ("Multiplicity", Html("<pre>" + html.escape("\n".join(result.multiplicity.get("summary", []))) + "</pre>"
                              f"<p>Per-item readings: <a href='{html.escape(ITEMS_FILE)}'>{html.escape(ITEMS_FILE)}</a>. "
                              + html.escape(_overlap_text(result.training_overlap)) + "</p>")),
        ("Calibration", _calibration_figure(profiles)),
        ("Withdraw and bet deltas", _delta_figure(profiles)),
        ("Probe by layer", _layer_figure(profiles)),
        ("Reportability of the probe axis (neurofeedback reporting task)", report),
        ("Area reports", Html(f"<ul>{''.join(links)}</ul>" if links else "<p>(none saved)</p>")),
        (f"Prompts ({first['model']}, first item)", Html(prompts)),
    ]
    return write_report(path, "Metacognitive atlas", sections, {"config": result.config.__dict__, "seconds": result.seconds})

"""Plotly figures of probes and neurofeedback runs; the neurofeedback ones take the results dict (as saved in results.json)."""
from __future__ import annotations

import plotly.graph_objects as go

_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]


def learning_curves(results: dict, metric: str = "accuracy") -> go.Figure:
    """Reporting accuracy (or cross_entropy) vs N in-context examples, per axis, with 95% CIs; for
    accuracy, each axis' surface (words-only) baseline as a thin dashed line where results carry it."""
    lo, hi = ("acc_low", "acc_high") if metric == "accuracy" else ("ce_low", "ce_high")
    fig = go.Figure()
    curves = results["reporting"]["curves"]
    for k, (axis, rows) in enumerate(curves.items()):
        y = [r[metric] for r in rows]
        err_hi = [(r[hi] - r[metric]) if r[hi] is not None else 0 for r in rows]
        err_lo = [(r[metric] - r[lo]) if r[lo] is not None else 0 for r in rows]
        style = dict(dash="dot", color="grey") if axis == "shuffled" else dict(color=_PALETTE[k % len(_PALETTE)])
        fig.add_scatter(x=[max(r["N"], 0.5) for r in rows], y=y, name=axis, mode="lines+markers", line=style,
                        error_y=dict(type="data", array=err_hi, arrayminus=err_lo, thickness=1), legendgroup=axis)
        if metric == "accuracy" and rows and rows[0].get("surface_accuracy") is not None:
            # the text-only learner given the same examples (metalens.probes.surface)
            fig.add_scatter(x=[max(r["N"], 0.5) for r in rows], y=[r["surface_accuracy"] for r in rows],
                            name=f"{axis}: words only", mode="lines", legendgroup=axis,
                            line=dict(color=style["color"], dash="dash", width=1))
    chance = 0.5 if metric == "accuracy" else 0.6931
    fig.add_hline(y=chance, line_dash="dash", line_color="black", annotation_text="chance")
    fig.update_layout(title=f"Reporting {metric.replace('_', ' ')} vs in-context examples N "
                            f"({results['metadata']['model']}, layer {results['config']['layer']})",
                      xaxis_title="N examples (bin upper edge; N=0 plotted at 0.5)", xaxis_type="log",
                      yaxis_title=metric.replace("_", " "))
    return fig


def reportability_vs_variance(results: dict) -> go.Figure:
    """The headline: each axis' reporting accuracy (N >= n_test_min) against the variance it explains."""
    rows = results["summary"]["rows"]
    fig = go.Figure()
    for flag, colour, label in [(True, "#d62728", "reportable (Holm p < alpha)"), (False, "#7f7f7f", "not reportable")]:
        sel = [r for r in rows if r["reportable"] == flag]
        fig.add_scatter(x=[r["explained_variance"] for r in sel], y=[r["report_accuracy"] for r in sel],
                        text=[r["axis"] for r in sel], mode="markers+text", textposition="top center",
                        marker=dict(size=11, color=colour), name=label)
    base = rows[0]["shuffled_accuracy"] if rows and rows[0]["shuffled_accuracy"] is not None else 0.5
    fig.add_hline(y=base, line_dash="dot", annotation_text="shuffled labels")
    fig.update_layout(title="Metacognitive space: reportability vs explained variance",
                      xaxis_title="fraction of variance explained (fit split)", xaxis_type="log",
                      yaxis_title="reporting accuracy, N >= n_test_min")
    return fig


def accuracy_heatmap(results: dict) -> go.Figure:
    """Reporting accuracy by axis (rows, by explained variance) and N (columns)."""
    curves = {k: v for k, v in results["reporting"]["curves"].items() if k != "shuffled"}
    axes = list(curves)
    ns = [r["N"] for r in next(iter(curves.values()))]
    z = [[r["accuracy"] for r in curves[a]] for a in axes]
    fig = go.Figure(go.Heatmap(z=z, x=[str(n) for n in ns], y=axes, zmid=0.5, colorscale="RdBu_r",
                               colorbar=dict(title="accuracy")))
    fig.update_layout(title="Reporting accuracy by axis and N", xaxis_title="N examples", yaxis_title="axis")
    return fig


def control_effects(results: dict) -> go.Figure:
    """Paired d_z of the shift imposed label 1 - 0, on the target axis and (largest |d_z|) off
    target; older results without d_z fall back to the unpaired Cohen's d."""
    fig = go.Figure()
    paired = all("dz_target" in e for kind in ("implicit", "explicit") if results.get(kind) for e in results[kind]["effects"])
    on, off, name = ("dz_target", "dz_off_target_max_abs", "d_z") if paired else ("d_target", "d_off_target_mean_abs", "d")
    for kind, colour in [("implicit", "#1f77b4"), ("explicit", "#ff7f0e")]:
        if not results.get(kind):
            continue
        eff = results[kind]["effects"]
        fig.add_bar(x=[e["target"] for e in eff], y=[e[on] for e in eff], name=f"{kind}: on target",
                    marker_color=colour)
        fig.add_bar(x=[e["target"] for e in eff], y=[e[off] for e in eff],
                    name=f"{kind}: off target ({'max' if paired else 'mean'} |{name}|)", marker_color=colour, opacity=0.4)
    title = ("Control effect sizes (paired d_z = mean / sd of the per-trial shift, imposed 1 - 0)" if paired
             else "Control effect sizes (unpaired Cohen's d, imposed 1 vs 0)")
    flip = [e.get("cancels_label_token", "label_token_dz" in e) for kind in ("implicit", "explicit") if results.get(kind)
            for e in results[kind]["effects"]]
    if flip and not any(flip):  # a label-only design: its shift includes the label token's own push
        title = title.replace("Control effect sizes", "Label-only shift, not control (includes the label token's push)")
    fig.update_layout(barmode="group", title=title, xaxis_title="target axis", yaxis_title=name)
    return fig


def accuracy_by_layer(rows: list[dict], title: str = "Probe accuracy by layer") -> go.Figure:
    """Probe accuracy by layer from `LayerSweep.rows()`: cross-validated mean ± std, and held-out."""
    layers = [r["layer"] for r in rows]
    fig = go.Figure()
    fig.add_scatter(x=layers, y=[r["cv_accuracy"] for r in rows], name="cross-validated",
                    error_y=dict(type="data", array=[r["cv_std"] for r in rows]), mode="lines+markers")
    fig.add_scatter(x=layers, y=[r["test_accuracy"] for r in rows], name="held-out", mode="lines+markers")
    fig.add_hline(y=0.5, line_dash="dot", annotation_text="chance")
    fig.update_layout(title=title, xaxis_title="layer", yaxis_title="accuracy", yaxis_range=[0.4, 1.02])
    return fig

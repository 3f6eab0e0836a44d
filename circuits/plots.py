"""Plotly figures: layer x head heatmaps, base-vs-post difference, checkpoint cohorts, circuit graph."""
from __future__ import annotations

from torch import Tensor


def head_heatmap(scores: Tensor, title: str = "", colorscale: str = "RdBu", symmetric: bool = True):
    """Layer x head heatmap of a [n_layers, n_heads] score tensor (layer 0 at the bottom)."""
    import plotly.graph_objects as go

    z = scores.detach().float().cpu()
    bound = float(z.nan_to_num(0).abs().max()) or 1.0
    fig = go.Figure(go.Heatmap(
        z=z.tolist(), x=[f"H{h}" for h in range(z.shape[1])], y=[f"L{l}" for l in range(z.shape[0])],
        colorscale=colorscale, zmid=0 if symmetric else None,
        zmin=-bound if symmetric else None, zmax=bound if symmetric else None,
    ))
    fig.update_layout(title=title, xaxis_title="head", yaxis_title="layer", height=200 + 22 * z.shape[0], width=520)
    return fig


def comparison_heatmap(base_circuit: set, post_circuit: set, diff: Tensor, title: str = "post - base attribution"):
    """Difference heatmap with circuit membership marked: E emergent, L lost (base-only), S shared."""
    fig = head_heatmap(diff, title)
    for (layer, head) in base_circuit | post_circuit:
        tag = "S" if (layer, head) in base_circuit and (layer, head) in post_circuit else (
            "E" if (layer, head) in post_circuit else "L")
        color = {"E": "#00a000", "L": "#d00000", "S": "#000000"}[tag]
        fig.add_annotation(x=f"H{head}", y=f"L{layer}", text=f"<b>{tag}</b>", showarrow=False, font=dict(color=color, size=14))
    return fig


def checkpoints_heatmap(scores: Tensor, steps: list[int], title: str = "head attribution over checkpoints"):
    """[n_checkpoints, n_layers, n_heads] scores as a heads x checkpoints heatmap."""
    import plotly.graph_objects as go

    n_ckpt, n_layers, n_heads = scores.shape
    z = scores.reshape(n_ckpt, -1).T.abs()  # rows: heads (L.H), columns: checkpoints
    names = [f"L{l}.H{h}" for l in range(n_layers) for h in range(n_heads)]
    fig = go.Figure(go.Heatmap(z=z.tolist(), x=[str(s) for s in steps], y=names, colorscale="Viridis"))
    fig.update_layout(title=title, xaxis_title="training step", yaxis_title="head", height=max(400, 9 * len(names)))
    return fig


def cohort_plot(cohorts: dict, steps: list[int], curve: list[dict] | None = None):
    """Number of circuit heads by the checkpoint they first appeared in (stacked), beside the accuracy curve."""
    from plotly.subplots import make_subplots

    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for first, counts in cohorts.items():
        fig.add_bar(x=[str(s) for s in steps], y=counts, name=f"appeared at {first}")
    if curve:
        fig.add_scatter(x=[str(c["step"]) for c in curve], y=[c.get("heldout_token_acc") for c in curve],
                        name="held-out token accuracy", secondary_y=True, mode="lines+markers")
    fig.update_layout(barmode="stack", title="circuit heads by cohort (first checkpoint in the circuit)",
                      xaxis_title="checkpoint step")
    fig.update_yaxes(title_text="heads in circuit", secondary_y=False)
    fig.update_yaxes(title_text="accuracy", secondary_y=True, range=[0, 1])
    return fig


def circuit_graph(edges: list[tuple[str, str, float]], n_layers: int, title: str = "circuit"):
    """Nodes placed by layer (y) and index (x); edges coloured by sign, width by |score|."""
    import plotly.graph_objects as go

    def where(node: str) -> tuple[float, float]:
        if node == "embed":
            return 0.0, -1.0
        if node == "logits":
            return 0.0, float(n_layers)
        kind, layer, *rest = node.split(".")
        layer = float(layer[1:])
        if kind == "mlp":
            return 5.0, layer + 0.5
        return float(rest[0][1:]), layer
    nodes = sorted({n for e in edges for n in e[:2]})
    fig = go.Figure()
    top = max((abs(w) for *_, w in edges), default=1.0) or 1.0
    for src, dst, w in edges:
        (x0, y0), (x1, y1) = where(src), where(dst)
        fig.add_scatter(x=[x0, x1], y=[y0, y1], mode="lines", showlegend=False, hoverinfo="text",
                        text=f"{src} -> {dst}: {w:.3g}",
                        line=dict(width=1 + 5 * abs(w) / top, color="#1f77b4" if w > 0 else "#d62728"))
    xy = [where(n) for n in nodes]
    fig.add_scatter(x=[p[0] for p in xy], y=[p[1] for p in xy], mode="markers+text", text=nodes,
                    textposition="middle right", marker=dict(size=10, color="#444"), showlegend=False)
    fig.update_layout(title=title, xaxis_title="head index (MLP at 5)", yaxis_title="layer", height=700)
    return fig


def faithfulness_plot(curves: dict, title: str = "faithfulness of edge circuits", convention: str = "metalens"):
    """Faithfulness against percent of edges kept (log x), one line per method, its area in the legend.

    curves: `{method: {"k": [...], "faithfulness": [...], "cpr": x, "cmd": y, ...}}` as from
    `metalens.circuits.faithfulness.faithfulness_curves`; 1 (the clean model) and 0 (corrupted) dashed.
    convention: "metalens" (the earlier curve, CPR and CMD), "signed" (MIB's counting and signed
    ranking, its CPR) or "abs" (MIB's counting and |score| ranking, its CMD).
    """
    import plotly.graph_objects as go

    label = {"metalens": "top |score| first", "signed": "MIB count, signed ranking",
             "abs": "MIB count, |score| ranking"}
    if convention not in label:
        raise ValueError(f"Unknown convention '{convention}': use one of {sorted(label)}.")
    fig = go.Figure()
    for method, c in curves.items():
        if convention == "metalens":
            y, name = c["faithfulness"], f"{method} (CPR {c['cpr']:.3f}, CMD {c['cmd']:.3f})"
        elif convention == "signed":
            y, name = c["faithfulness_signed"], f"{method} (MIB CPR {c['cpr_signed']:.3f})"
        else:
            y, name = c["faithfulness_abs"], f"{method} (MIB CMD {c['cmd_abs']:.3f})"
        fig.add_scatter(x=c["k"], y=y, mode="lines+markers", name=name)
    for level in (0.0, 1.0):
        fig.add_hline(y=level, line={"dash": "dash", "color": "#888", "width": 1})
    fig.update_layout(title=title, xaxis_title=f"edges kept (%, {label[convention]})", yaxis_title="faithfulness",
                      xaxis_type="log", height=450, width=700)
    return fig

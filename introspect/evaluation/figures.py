"""Plotly figures for the introspection reports."""
from __future__ import annotations


def reliability_figure(reliability: dict):
    """Observed accuracy vs predicted P(correct) per prefix fraction, with the diagonal."""
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="gray"), name="perfect"))
    for frac, rows in reliability.items():
        fig.add_trace(go.Scatter(x=[r["predicted"] for r in rows], y=[r["observed"] for r in rows],
                                 mode="lines+markers", name=f"prefix {float(frac):.0%}",
                                 text=[f"n={r['count']}" for r in rows]))
    fig.update_layout(xaxis_title="head P(correct)", yaxis_title="observed accuracy", height=450)
    return fig


def auroc_figure(fractions: list[dict]):
    """AUROC of the head and its baselines at each prefix fraction."""
    import plotly.graph_objects as go

    fig = go.Figure()
    xs = [f["fraction"] for f in fractions]
    for name in ("head", "probe", "shuffled", "verbal"):
        if name in fractions[0]:
            fig.add_trace(go.Scatter(x=xs, y=[f[name]["auroc"] for f in fractions], mode="lines+markers", name=name))
    fig.add_hline(y=0.5, line_dash="dot", line_color="gray")
    fig.update_layout(xaxis_title="prefix fraction of the response", yaxis_title="AUROC (reward)", height=400)
    return fig


def pareto_figure(result: dict):
    """Accuracy vs mean tokens per task: the adaptive sampler against voting baselines."""
    import plotly.graph_objects as go

    fig = go.Figure()
    groups = {}
    for key in ("majority", "best_of_n", "pass_at_n", "adaptive"):
        for pt in result[key]:
            groups.setdefault(pt["method"], []).append(pt)
    for method, pts in groups.items():
        pts = sorted(pts, key=lambda p: p["tokens"])
        fig.add_trace(go.Scatter(x=[p["tokens"] for p in pts], y=[p["accuracy"] for p in pts],
                                 mode="lines+markers", name=method,
                                 line=dict(dash="dot") if "oracle" in method else None,
                                 text=[f"param={p['param']}" for p in pts]))
    if result.get("utility"):  # the live utility sampler, one point per (alpha, beta)
        rows = result["utility"]
        fig.add_trace(go.Scatter(x=[r["tokens"] for r in rows], y=[r["accuracy"] for r in rows], mode="markers",
                                 marker=dict(size=10, symbol="diamond"), name="utility sampler (live)",
                                 text=[f"alpha={r['alpha']}, beta={r['beta']}" for r in rows]))
    fig.update_layout(xaxis_title="mean generated tokens per problem", yaxis_title="accuracy", height=450)
    return fig


def training_figure(history: list[dict]):
    """Mode full: the reserved-slice CE of each step's batch, the truncated KL x 10 and the held-out
    monitor's CE (step -1 is before the first step)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    steps = [h for h in history if h["step"] >= 0]
    fig.add_trace(go.Scatter(x=[h["step"] for h in steps], y=[h["ce"] for h in steps], mode="lines", name="train CE"))
    fig.add_trace(go.Scatter(x=[h["step"] for h in steps], y=[10 * h["kl"] for h in steps], mode="lines",
                             name="truncated KL x 10"))
    watched = [h for h in history if "monitor_ce" in h]
    fig.add_trace(go.Scatter(x=[h["step"] for h in watched], y=[h["monitor_ce"] for h in watched],
                             mode="lines+markers", name="held-out CE (monitor)"))
    fig.update_layout(xaxis_title="optimiser step", yaxis_title="nats per position", height=400)
    return fig

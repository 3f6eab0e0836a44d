"""The report of a `SteerABResult`: the propensity figure and the report's sections."""
from __future__ import annotations


def _fmt(x, spec: str = "+.3f") -> str:
    return "n/a" if x is None else format(x, spec)


def propensity_figure(result):
    """Plotly figure: test propensity (95 % CI) and flip share vs in-range strength, one line per layer."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    unit = "logit difference" if result.config.metric == "logit-diff" else "probability"
    fig = make_subplots(rows=1, cols=2, subplot_titles=(f"Propensity ({unit}, test, 95% CI)",
                                                        "Share of items whose answer flips vs strength 0"))
    for layer, rows in sorted(result.propensity.items()):
        name = f"layer {layer}" + (" (chosen)" if layer == result.layer else "")
        x = [r["strength"] for r in rows]
        fig.add_trace(go.Scatter(x=x, y=[r["mean"] for r in rows], mode="lines+markers", name=name,
                                 legendgroup=str(layer), error_y=dict(
                                     type="data", array=[r["high"] - r["mean"] for r in rows],
                                     arrayminus=[r["mean"] - r["low"] for r in rows])), 1, 1)
        fig.add_trace(go.Scatter(x=x, y=[r["flip_share"] for r in rows], mode="lines+markers", name=name,
                                 legendgroup=str(layer), showlegend=False), 1, 2)
    fig.update_xaxes(title_text="strength")
    fig.update_yaxes(range=[0, 1], row=1, col=2)
    if result.config.metric == "prob":
        fig.update_yaxes(range=[0, 1], row=1, col=1)
    fig.update_layout(height=420)
    return fig


def sections(result) -> list:
    """(title, content) pairs for `metalens.report.write_report`."""
    layers = [{"layer": k, "range": f"[{result.ranges[k]['low']:g}, {result.ranges[k]['high']:g}]",
               "validation steerability": result.validation.get(k, {}).get("estimate"),
               "test steerability": v.get("estimate"), "95% CI": f"[{_fmt(v.get('low'))}, {_fmt(v.get('high'))}]",
               "MDE": _fmt((v.get("mde_over_items") or {}).get("value")),
               "MDE (pooled fit)": _fmt((v.get("mde") or {}).get("value")), "n": v.get("n"),
               "chosen": "yes" if k == result.layer else "exploratory"} for k, v in sorted(result.steerability.items())]
    out = [("Headline", result.headline())]
    if result.layer is None:
        return out + [("Steerability per layer", layers)]
    by_strength = {r["strength"]: r for r in result.propensity[result.layer]}
    costs = [{"strength": c["strength"], "in range": "yes" if c["in_range"] else "no",
              "propensity (test)": by_strength.get(c["strength"], {}).get("mean"),
              "flip share": by_strength.get(c["strength"], {}).get("flip_share"),
              "loss change (held-out, nats/token)": c["neutral_loss_change"],
              "change 95% CI": f"[{_fmt(c['change_low'])}, {_fmt(c['change_high'])}]",
              "control accuracy": c["control_accuracy"]} for c in result.costs]
    s, cfg = result.splits, result.config
    metric = ("the logit difference of the matching answer letter over the other (0 = indifferent)"
              if cfg.metric == "logit-diff" else "the probability of the matching letter normalised over the two")
    where = ("from the answer's '(' on (the question is not steered)" if cfg.steer_positions == "response"
             else "at every position, the question's included")
    return out + [
        ("Propensity and flips per layer (test items, in-range strengths)", propensity_figure(result)),
        ("Steerability per layer (mean per-item slope per unit strength over the layer's in-range strengths)", layers),
        (f"Behaviour shift next to what it costs (layer {result.layer})", costs),
        ("Open-ended answers (choices stripped; no judge)", result.samples),
        ("How to read this", f"Propensity is {metric}, read with the vector added {where}. Each layer's strength "
         f"range is the widest around 0 whose neutral-text loss rises at most {cfg.cost_bound:g} nats/token on the "
         "validation half of the neutral texts; steerability is the least-squares slope of each item's propensity "
         "over that range, averaged over items, with a t-interval over items; the MDE is the slope that t-test over items' slopes "
         "detects with 80 % power (the pooled-fit MDE assumes no slope spread between items, so it is smaller). "
         + ("Strength 1 adds a vector as long as the layer's mean residual-stream norm at the answer letter. "
            if cfg.unit == "residual" else "Strength 1 adds the raw CAA mean difference. ")
         + f"The vector is the CAA mean difference at the answer letter over {s['train']} training items "
         f"({s['train_matching_A']} matching with (A), {s['train_matching_B']} with (B)); the layer was chosen on "
         f"{s['validation']} validation items and every number here is on {s['test']} test items; the other layers "
         "are exploratory. Costs: neutral loss change on the held-out half of the neutral texts (paired against "
         "strength 0) and accuracy on unrelated two-choice questions (in-range strengths only)."),
    ]

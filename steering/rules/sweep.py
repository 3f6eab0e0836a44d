"""The rule workflow's layer x strength sweep: score one setting (`evaluate`), sweep a grid, draw it."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from metalens.steering.fluency import token_loss
from metalens.steering.generate import generate
from metalens.steering.rules.checkers import adherence
from metalens.steering.vector import SteeringVector, train_steering_vector


def sweep_figure(rows: list[dict], rule: str = ""):
    """Plotly figure of sweep rows: adherence (with 95 % CI) and fluency cost vs strength, one line per layer."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("Adherence (95% CI)", "Fluency cost (nats/token)"))
    for layer in sorted({r["layer"] for r in rows}):
        line = sorted((r for r in rows if r["layer"] == layer), key=lambda r: r["strength"])
        x = [r["strength"] for r in line]
        y = [r["adherence"] for r in line]
        err_hi = [r["high"] - r["adherence"] for r in line]
        err_lo = [r["adherence"] - r["low"] for r in line]
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=f"layer {layer}", legendgroup=str(layer),
                                 error_y=dict(type="data", array=err_hi, arrayminus=err_lo)), 1, 1)
        fig.add_trace(go.Scatter(x=x, y=[r["fluency_cost"] for r in line], mode="lines+markers",
                                 name=f"layer {layer}", legendgroup=str(layer), showlegend=False), 1, 2)
    fig.update_xaxes(title_text="strength")
    fig.update_yaxes(range=[0, 1], row=1, col=1)
    fig.update_layout(title=f"Sweep: {rule}", height=420)
    return fig


def best_setting(rows: list[dict], max_fluency_cost: float = 1.0) -> dict:
    """Sweep row with the highest adherence whose fluency cost is within budget (ties: lower strength)."""
    ok = [r for r in rows if r["strength"] != 0 and (r["fluency_cost"] is None
          or not math.isfinite(r["fluency_cost"]) or r["fluency_cost"] <= max_fluency_cost)]
    if not ok:
        ok = [r for r in rows if r["strength"] != 0] or rows
    return max(ok, key=lambda r: (r["adherence"], -abs(r["strength"])))


@dataclass
class SweepResult:
    """Adherence and fluency for each (layer, strength); strength 0 is the unsteered baseline."""

    rows: list[dict]
    vector: SteeringVector
    rule: str = ""
    baseline: dict = field(default_factory=dict)
    samples: dict = field(default_factory=dict)

    def best(self, max_fluency_cost: float = 1.0) -> dict:
        """Row with the highest adherence whose fluency cost is within budget (ties: lower strength)."""
        return best_setting(self.rows, max_fluency_cost)

    def figure(self):
        """Plotly figure: adherence (with 95 % CI) and fluency cost vs strength, one line per layer."""
        return sweep_figure(self.rows, self.rule)


def evaluate(model, prompts, checker, steer=None, strength=None, max_new_tokens: int = 24,
             base_nll: float | None = None, batch_size: int = 16) -> dict:
    """Generate, check, and score one setting: adherence (with CI), mean loss, fluency cost, samples."""
    outs = generate(model, prompts, steer, max_new_tokens=max_new_tokens, strength=strength, batch_size=batch_size)
    passed = [bool(f) for f in checker(outs)]
    score = adherence(passed)
    nll = float(np.nanmean(token_loss(model, prompts, outs))) if any(o for o in outs) else float("nan")
    cost = nll - base_nll if base_nll is not None else 0.0
    return {"adherence": score.rate, "low": score.low, "high": score.high, "n": score.n,
            "nll": nll, "fluency_cost": cost, "outputs": outs, "passed": passed}


def sweep(model, positive, negative, checker, prompts, layers, strengths=(0.5, 1.0, 2.0),
          method: str = "mean_diff", positions: str = "mean", max_new_tokens: int = 24, rule: str = "",
          vector: SteeringVector | None = None, progress: bool = False) -> SweepResult:
    """Train a vector at each of `layers` (one capture) and score every (layer, strength) on `prompts`.

    Fluency cost = mean per-token loss of the steered text minus that of the unsteered text,
    both under the unsteered model: the surprise steering adds to what the model would write.
    """
    vector = vector or train_steering_vector(model, positive, negative, layers=layers, method=method,
                                             positions=positions)
    bar = tqdm(total=1 + len(layers) * len(strengths), desc="sweep", unit="setting", disable=not progress)
    base = evaluate(model, prompts, checker, None, max_new_tokens=max_new_tokens)
    base["fluency_cost"] = 0.0
    base.pop("passed")
    bar.update()
    rows, samples = [], {"unsteered": base.pop("outputs")}
    for layer in layers:
        single = vector.restricted([layer])
        rows.append({"layer": layer, "strength": 0.0, **base})
        for strength in strengths:
            res = evaluate(model, prompts, checker, single, strength, max_new_tokens, base_nll=base["nll"])
            samples[f"L{layer}_s{strength:g}"] = res.pop("outputs")
            res.pop("passed")
            rows.append({"layer": layer, "strength": float(strength), **res})
            bar.update()
    bar.close()
    return SweepResult(rows=rows, vector=vector, rule=rule, baseline=base, samples=samples)

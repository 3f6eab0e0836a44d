"""report.html of a post-training run: held-out accuracy before/after, the training curve, example completions."""
from __future__ import annotations

from pathlib import Path


def write_posttrain_report(path: Path, result) -> None:
    """Write `result` (a `PosttrainResult`) as an HTML report at `path`."""
    import plotly.graph_objects as go

    from metalens.report import write_report

    steps = [c["step"] for c in result.curve]
    fig = go.Figure()
    fig.add_scatter(x=steps, y=[c["loss"] for c in result.curve], name="train loss (EMA)")
    fig.add_scatter(x=steps, y=[c["heldout_token_acc"] for c in result.curve], name="held-out token acc", yaxis="y2")
    graded = [c for c in result.curve if "accuracy" in c]
    if graded:
        fig.add_scatter(x=[c["step"] for c in graded], y=[c["accuracy"] for c in graded], yaxis="y2",
                        name="held-out accuracy (greedy, Wilson 95 %)", error_y=dict(
                            type="data", symmetric=False, array=[c["high"] - c["accuracy"] for c in graded],
                            arrayminus=[c["accuracy"] - c["low"] for c in graded]))
    if any("reward" in c for c in result.curve):
        fig.add_scatter(x=steps, y=[c.get("reward") for c in result.curve], name="mean reward (GRPO)", yaxis="y2")
    fig.update_layout(xaxis_title="step", yaxis2=dict(overlaying="y", side="right", range=[0, 1]))
    rows = [{"when": when, "accuracy": acc["accuracy"], "95% CI": f"[{acc.get('low', float('nan')):.3f}, "
             f"{acc.get('high', float('nan')):.3f}]", "n": acc["n"], **{f"level {k}": v for k, v in acc["by_level"].items()}}
            for when, acc in (("before", result.accuracy_before), ("after", result.accuracy_after))]
    if result.change:
        c = result.change
        rows.append({"when": "after - before (paired over problems)", "accuracy": c["mean_diff"],
                     "95% CI": f"[{c['low']:+.3f}, {c['high']:+.3f}]", "n": c["n"]})
    examples = [{"before": b, "after": a} for b, a in zip(result.accuracy_before["completions"][:8], result.accuracy_after["completions"][:8])]
    cfg = result.config
    how = (f"{cfg.method.upper()}, {'full fine-tuning' if cfg.full else f'LoRA r={cfg.lora_rank}'} on "
           f"{'all blocks' if not cfg.lora_layers else f'the last {cfg.lora_layers} blocks'}")
    write_report(path, f"Post-training on step-by-step arithmetic ({how})",
                 [("Held-out accuracy (greedy)", rows), ("Training curve", fig), ("Example completions", examples)],
                 result.metadata)

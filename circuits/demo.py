"""`demo`: a quick look at a model's heads (induction detector + attribution heatmap), for `metalens demo`."""
from __future__ import annotations

from pathlib import Path


def demo(model, out, n: int = 6) -> dict:
    """Induction-head detector and attribution patching on a few induction prompts; writes report.html.

    Returns the top induction head and its score, the top attribution head, the report path, and
    `headline`: those numbers in one line for the demo index.
    Under 2 minutes on CPU for gemma-3-270m (one detector pass, one forward/backward pass).
    """
    from metalens.circuits.attribution import attribute_heads
    from metalens.circuits.detect import detect_heads, top_heads
    from metalens.circuits.plots import head_heatmap
    from metalens.circuits.tasks import induction_task
    from metalens.report import save_json, write_report

    out = Path(out)
    induction = detect_heads(model, "induction", n_seqs=4, seq_len=16)  # [n_layers, n_heads]
    task = induction_task(model.tokenizer, n=n)
    attribution = attribute_heads(model, task)  # [n_layers, n_heads]
    summary = [{"what": "top induction heads", "heads (L, H)": str(top_heads(induction, 5))},
               {"what": "top attribution heads (|score|)", "heads (L, H)": str(top_heads(attribution.abs(), 5))}]
    save_json(out / "results.json", {"induction": induction, "attribution": attribution, "metadata": model.metadata()})
    report = write_report(out / "report.html", f"circuits demo: {model.name}", [
        ("Summary", summary),
        ("Induction-head scores (attention to the token after the earlier copy)", head_heatmap(induction, "induction", "Viridis", False)),
        ("Attribution patching on the induction/copy task (logit-diff change)", head_heatmap(attribution, "attribution")),
    ], model.metadata())
    best, top_attr = top_heads(induction, 1)[0], top_heads(attribution.abs(), 1)[0]
    best_name, attr_name = f"L{best[0]}.H{best[1]}", f"L{top_attr[0]}.H{top_attr[1]}"
    return {"headline": (f"top induction head {best_name} (score {float(induction[best]):.2f}); "
                         f"top attribution head on copying {attr_name} ({float(attribution[top_attr]):+.2f} logit diff)"),
            "top_induction_head": best_name, "induction_score": float(induction[best]),
            "top_attribution_head": attr_name, "attribution_score": float(attribution[top_attr]),
            "report": str(report)}

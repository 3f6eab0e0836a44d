"""`demo`: a quick look at a model's heads (induction detector + attribution heatmap), for `make demo`."""
from __future__ import annotations

from pathlib import Path


def demo(model, out_dir, n: int = 6) -> dict:
    """Induction-head detector and attribution patching on a few induction prompts; writes report.html.

    Returns headline numbers: the top induction head and its score, the top attribution head,
    and the report path.

    Under 2 minutes on CPU for gemma-3-270m (one detector pass, one forward/backward pass).
    """
    from metalens.circuits.attribution import attribute_heads
    from metalens.circuits.detect import detect_heads, top_heads
    from metalens.circuits.plots import head_heatmap
    from metalens.circuits.tasks import induction_task
    from metalens.report import save_json, write_report

    out = Path(out_dir)
    induction = detect_heads(model, "induction", n_seqs=4, seq_len=16)
    task = induction_task(model.tokenizer, n=n)
    attribution = attribute_heads(model, task)
    summary = [{"what": "top induction heads", "heads (L, H)": str(top_heads(induction, 5))},
               {"what": "top attribution heads (|score|)", "heads (L, H)": str(top_heads(attribution.abs(), 5))}]
    save_json(out / "results.json", {"induction": induction, "attribution": attribution, "metadata": model.metadata()})
    report = write_report(out / "report.html", f"circuits demo: {model.name}", [
        ("Summary", summary),
        ("Induction-head scores (attention to the token after the earlier copy)", head_heatmap(induction, "induction", "Viridis", False)),
        ("Attribution patching on the induction/copy task (logit-diff change)", head_heatmap(attribution, "attribution")),
    ], model.metadata())
    best, top_attr = top_heads(induction, 1)[0], top_heads(attribution.abs(), 1)[0]
    return {"top_induction_head": f"L{best[0]}.H{best[1]}", "induction_score": float(induction[best]),
            "top_attribution_head": f"L{top_attr[0]}.H{top_attr[1]}",
            "attribution_score": float(attribution[top_attr]), "report": str(report)}

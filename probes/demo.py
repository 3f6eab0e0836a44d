"""`demo`: a quick tour of probes on a model (under 2 minutes on CPU)."""
from __future__ import annotations

from pathlib import Path


def demo(model="gemma-3-270m", out: str | Path = "runs/probes-demo", layer: int | None = None,
         device: str | None = None) -> dict:
    """Probe every 3rd layer on 120 shipped moral sentences, then run a quick neurofeedback at the
    best layer (or `layer`); each saves results.json and report.html under `out`.

    Returns the key numbers, with a one-line `"headline"`.
    """
    import metalens
    from metalens.probes.neurofeedback import NeurofeedbackConfig, run_neurofeedback
    from metalens.probes.sweep import ProbeSweepConfig, run_probe_sweep
    from metalens.report import save_json

    if isinstance(model, str):
        model = metalens.load_model(model, device=device)
    out = Path(out)
    sweep_cfg = ProbeSweepConfig(dataset="moral", layers=tuple(range(0, model.n_layers, 3)), max_sentences=120)
    sweep = run_probe_sweep(model, sweep_cfg, out=out / "probe_sweep", progress=False)
    best = sweep.best_layer if layer is None else layer
    nf = run_neurofeedback(model, NeurofeedbackConfig.quick(layer=best), out=out / "neurofeedback", progress=False)
    s = nf.summary
    probe_acc = sweep.probe(sweep.best_layer).cv_accuracy
    lr = next((r for r in s["rows"] if r["axis"] == "LR"), None)
    lr_text = (f"; LR axis reported at {lr['report_accuracy']:.2f} vs {lr['shuffled_accuracy']:.2f} shuffled"
               if lr and lr["report_accuracy"] is not None and lr["shuffled_accuracy"] is not None else "")
    headline = (f"moral probe best at layer {sweep.best_layer} (cv acc {probe_acc:.2f}); neurofeedback at layer {best}: "
                f"{s['n_reportable']}/{s['n_axes']} axes reportable{lr_text}")
    summary = {"headline": headline, "model": model.name, "probe_best_layer": sweep.best_layer,
               "probe_best_cv_accuracy": probe_acc, "probe_rows": sweep.rows(), "neurofeedback_layer": best,
               "reportable_axes": s["n_reportable"], "n_axes": s["n_axes"], "axes": s["rows"], "out": str(out)}
    save_json(out / "demo.json", summary)
    return summary

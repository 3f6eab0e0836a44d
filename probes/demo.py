"""`demo`: a quick tour of probes on a model (under 2 minutes on CPU)."""
from __future__ import annotations

from pathlib import Path


def demo(model="gemma-3-270m", out_dir: str | Path = "runs/probes-demo", layer: int | None = None,
         device: str | None = None) -> dict:
    """Probe every 3rd layer on 120 shipped moral sentences, save the best probe and the sweep
    figure, then run a quick neurofeedback at the best layer. Returns a dict of headline numbers."""
    import metalens
    from metalens.report import save_json, write_report
    from metalens.probes.datasets import load_dataset
    from metalens.probes.neurofeedback import NeurofeedbackConfig, run_neurofeedback
    from metalens.probes.sweep import sweep_layers

    if isinstance(model, str):
        model = metalens.load_model(model, device=device)
    out = Path(out_dir)
    ds = load_dataset("moral").subset(range(120))
    sweep = sweep_layers(model, ds.texts, ds.labels, list(range(0, model.n_layers, 3)))
    best = sweep.best_layer if layer is None else layer
    sweep.save(out / "probes")
    write_report(out / "probe_sweep.html", f"Moral probe by layer: {model.name}",
                 [("Accuracy by layer", sweep.figure()), ("Per layer", sweep.rows())], sweep.metadata)
    nf = run_neurofeedback(model, best, out / "neurofeedback", NeurofeedbackConfig.quick(), progress=False)
    headline = {"model": model.name, "probe_best_layer": best, "probe_rows": sweep.rows(),
                "neurofeedback_layer": best, "reportable_axes": nf.summary["n_reportable"],
                "axes": nf.summary["rows"], "out_dir": str(out)}
    save_json(out / "demo.json", headline)
    return headline

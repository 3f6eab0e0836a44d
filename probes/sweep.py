"""Probe every layer of a model on one labelled set, with an accuracy-by-layer figure."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from metalens.probes.train import Probe, train


@dataclass
class LayerSweep:
    """One probe per layer and its accuracies."""

    layers: list[int]
    probes: list[Probe]
    site: str  # site template, e.g. "blocks.{layer}.hook_resid_post"
    metadata: dict = field(default_factory=dict)

    @property
    def best_layer(self) -> int:
        """The layer whose probe has the highest cross-validated accuracy."""
        return max(zip(self.layers, self.probes), key=lambda lp: lp[1].cv_accuracy)[0]

    def rows(self) -> list[dict]:
        """One row per layer: cv accuracy (mean, std) and held-out accuracy."""
        return [{"layer": L, "cv_accuracy": p.cv_accuracy, "cv_std": p.cv_std, "test_accuracy": p.test_accuracy}
                for L, p in zip(self.layers, self.probes)]

    def figure(self, title: str | None = None):
        """Plotly figure: accuracy by layer (cv mean ± std, and held-out)."""
        import plotly.graph_objects as go

        rows = self.rows()
        fig = go.Figure()
        fig.add_scatter(x=self.layers, y=[r["cv_accuracy"] for r in rows], name="cross-validated",
                        error_y=dict(type="data", array=[r["cv_std"] for r in rows]), mode="lines+markers")
        fig.add_scatter(x=self.layers, y=[r["test_accuracy"] for r in rows], name="held-out", mode="lines+markers")
        fig.add_hline(y=0.5, line_dash="dot", annotation_text="chance")
        fig.update_layout(title=title or f"Probe accuracy by layer ({self.metadata.get('model', '')})",
                          xaxis_title="layer", yaxis_title="accuracy", yaxis_range=[0.4, 1.02])
        return fig

    def save(self, path: str | Path) -> Path:
        """Each probe under `path/layer_L/`, plus `sweep.json`."""
        path = Path(path)
        for L, p in zip(self.layers, self.probes):
            p.save(path / f"layer_{L}")
        (path / "sweep.json").write_text(json.dumps({"layers": self.layers, "site": self.site,
                                                      "metadata": self.metadata}, indent=2, default=str))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "LayerSweep":
        """Read what `save` wrote."""
        path = Path(path)
        meta = json.loads((path / "sweep.json").read_text())
        return cls(meta["layers"], [Probe.load(path / f"layer_{L}") for L in meta["layers"]], meta["site"], meta["metadata"])


def sweep_layers(model, texts: list[str], labels, layers: list[int] | None = None, *,
                 site: str = "blocks.{layer}.hook_resid_post", positions: str = "mean",
                 batch_size: int = 16, seed: int = 0, **train_kwargs) -> LayerSweep:
    """Capture `texts` once at every layer in `layers` (default: all) and train a probe on each."""
    import metalens

    layers = list(range(model.n_layers)) if layers is None else [model.check_layer(L) for L in layers]
    sites = [site.format(layer=L) for L in layers]
    acts = metalens.capture(model, texts, sites, positions=positions, batch_size=batch_size, progress=False)
    meta = {**model.metadata(), "positions": positions, "n_texts": len(texts)}
    probes = [train(acts[s], labels, seed=seed, metadata={**meta, "layer": L, "site": s}, **train_kwargs)
              for L, s in zip(layers, sites)]
    return LayerSweep(layers, probes, site, {**meta, "seed": seed})

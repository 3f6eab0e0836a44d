"""Probe every layer of a model on one labelled set: `run_probe_sweep` (the `metalens probe` workflow)
and `sweep_layers` (the same on texts and labels you bring)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from metalens.artifact import read_artifact, read_json, write_artifact
from metalens.probes import figures
from metalens.probes.datasets import load_dataset
from metalens.probes.probe import Probe, train_probe
from metalens.report import save_json, to_jsonable, write_report
from metalens.sites import resid_post


@dataclass
class ProbeSweepConfig:
    """Settings of `run_probe_sweep`."""

    dataset: str | Path = "moral"  # a shipped set (moral, facts) or a file `load_dataset` reads (CSV or JSONL)
    layers: tuple[int, ...] | None = None  # None or ("all",): every block
    positions: str = "mean"  # how a sentence's activation is pooled: "mean" over its tokens or "last"
    max_sentences: int | None = None  # balanced subsample of the dataset (None: all)
    cv: int = 5
    test_size: float = 0.2
    C: float = 1.0
    batch_size: int = 16
    seed: int = 0

    def __post_init__(self):
        if self.layers is not None:
            self.layers = ("all",) if self.layers in ("all", ["all"], ("all",)) else tuple(self.layers)
        if self.positions not in ("mean", "last"):
            raise ValueError(f"positions must be 'mean' or 'last', not {self.positions!r}.")
        for name, low in (("cv", 2), ("batch_size", 1), ("seed", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
        if self.max_sentences is not None and (not isinstance(self.max_sentences, int) or self.max_sentences < 4):
            raise ValueError(f"max_sentences must be an integer >= 4 or None, got {self.max_sentences!r}.")
        if not 0 < self.test_size < 1:
            raise ValueError(f"test_size must be a fraction in (0, 1), got {self.test_size}.")
        if not self.C > 0:
            raise ValueError(f"C (inverse regularisation) must be > 0, got {self.C}.")


def _nan(value) -> float:
    return float("nan") if value is None else float(value)


@dataclass
class LayerSweep:
    """One probe per layer, each reading the residual stream at `sites[i]`, and their accuracies."""

    layers: list[int]
    probes: list[Probe]
    sites: list[str]
    metadata: dict = field(default_factory=dict)
    source: str | None = field(default=None, repr=False, compare=False)  # the folder `load` read, for errors

    @property
    def best_layer(self) -> int:
        """The layer whose probe has the highest cross-validated accuracy."""
        return max(zip(self.layers, self.probes), key=lambda lp: lp[1].cv_accuracy)[0]

    def probe(self, layer: int) -> Probe:
        """The probe trained at `layer`."""
        if layer not in self.layers:
            raise KeyError(f"No probe at layer {layer}; this sweep has layers {self.layers}.")
        return self.probes[self.layers.index(layer)]

    def check_model(self, model) -> None:
        """Refuse a `model` whose width or depth the probes do not fit (they were trained on another model)."""
        where = f"The layer sweep in {self.source}" if self.source else "This layer sweep"
        width = self.probes[0].weight.shape[0] if self.probes else model.d_model
        if width != model.d_model:
            raise ValueError(f"{where} holds probes of width {width}; {model.name} has d_model={model.d_model}: "
                             "use the sweep trained on this model.")
        if self.layers and max(self.layers) >= model.n_layers:
            raise ValueError(f"{where} has a probe at layer {max(self.layers)}; {model.name} has blocks "
                             f"0-{model.n_layers - 1}: use the sweep trained on this model.")

    def rows(self) -> list[dict]:
        """One row per layer: cv accuracy (mean, std) and held-out accuracy."""
        return [{"layer": L, "cv_accuracy": p.cv_accuracy, "cv_std": p.cv_std, "test_accuracy": p.test_accuracy}
                for L, p in zip(self.layers, self.probes)]

    def figure(self, title: str | None = None):
        """Plotly figure: accuracy by layer (cv mean ± std, and held-out)."""
        return figures.accuracy_by_layer(self.rows(), title or f"Probe accuracy by layer ({self.metadata.get('model', '')})")

    def save(self, path: str | Path) -> Path:
        """Write results.json, report.html and the probes (`layer_sweep.safetensors` + `.json`) into `path`."""
        path = Path(path)
        probes = [{"bias": p.bias, "cv_accuracy": p.cv_accuracy, "cv_std": p.cv_std, "test_accuracy": p.test_accuracy,
                   "metadata": p.metadata} for p in self.probes]
        weights = torch.stack([p.weight.float() for p in self.probes])  # [n_layers, d_model]
        write_artifact(path, "layer_sweep", {"weights": weights},
                       to_jsonable({"layers": self.layers, "sites": self.sites, "probes": probes, "metadata": self.metadata}))
        save_json(path / "results.json", {"best_layer": self.best_layer, "rows": self.rows(), "sites": self.sites,
                                          "metadata": self.metadata})
        title = f"Probe sweep: {self.metadata.get('dataset', 'labelled set')} on {self.metadata.get('model', 'model')}"
        write_report(path / "report.html", title, [("Accuracy by layer", self.figure()), ("Per layer", self.rows())],
                     self.metadata)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "LayerSweep":
        """Read what `save` wrote."""
        hint = "point at a directory written by LayerSweep.save (`metalens probe --out DIR`)."
        file = Path(path) / "layer_sweep.json"
        declared = read_json(file, "layer-sweep metadata") if file.exists() else {}
        layers, meta_d = declared.get("layers"), declared.get("metadata")
        n = len(layers) if isinstance(layers, list) else None
        width = meta_d.get("d_model") if isinstance(meta_d, dict) else None
        tensors, meta = read_artifact(path, "layer_sweep", hint, expect={"weights": (n, width)},
                                      required=("layers", "sites", "probes", "metadata"))
        if n is None or not isinstance(meta["probes"], list) or len(meta["probes"]) != n or len(meta["sites"]) != n:
            raise ValueError(f"{file}: 'layers', 'sites' and 'probes' must be lists of one entry per probe "
                             f"({len(tensors['weights'])} weights): the file was edited; re-save the sweep.")
        try:
            probes = [Probe(w, p["bias"], _nan(p["cv_accuracy"]), _nan(p["cv_std"]), _nan(p["test_accuracy"]),
                            p["metadata"]) for w, p in zip(tensors["weights"], meta["probes"])]
        except (KeyError, TypeError) as err:
            raise ValueError(f"{file}: a probe entry lacks {err} (each needs bias, cv_accuracy, cv_std, test_accuracy, "
                             "metadata): re-save the sweep.") from None
        return cls(meta["layers"], probes, meta["sites"], meta["metadata"], source=str(path))


def sweep_layers(model, texts: list[str], labels, layers: list[int] | None = None, *,
                 site: Callable[[int], str] = resid_post, positions: str = "mean", batch_size: int = 16,
                 seed: int = 0, progress: bool = False, groups=None, **train_kwargs) -> LayerSweep:
    """A `LayerSweep`: `texts` captured once at `site(L)` for every layer in `layers` (default: all),
    and a probe trained on each (`train_kwargs` go to `train_probe`). Pass `groups` (one id per
    text, shared by near-copies) so held-out and CV splits keep each group on one side."""
    import metalens

    layers = list(range(model.n_layers)) if layers is None else model.resolve_layers(list(layers))
    sites = [site(L) for L in layers]
    acts = metalens.capture(model, texts, sites, positions=positions, batch_size=batch_size, progress=progress)
    meta = {**model.metadata(), "positions": positions, "n_texts": len(texts)}
    probes = [train_probe(acts[s], labels, seed=seed, groups=groups, metadata={**meta, "layer": L, "site": s}, **train_kwargs)
              for L, s in zip(layers, sites)]
    return LayerSweep(layers, probes, sites, {**meta, "seed": seed})


def run_probe_sweep(model, config: ProbeSweepConfig | None = None, *, out: str | Path | None = None,
                    progress: bool = True) -> LayerSweep:
    """Probe every layer in `config.layers` on `config.dataset`; with `out`, save the sweep there
    (results.json, report.html, the probes)."""
    if config is not None and not isinstance(config, ProbeSweepConfig):
        raise TypeError(f"config must be a ProbeSweepConfig, not {type(config).__name__}: "
                        "call run_probe_sweep(model, ProbeSweepConfig(layers=(3, 6)), out=DIR).")
    cfg = config or ProbeSweepConfig()
    ds = load_dataset(cfg.dataset).balanced(cfg.max_sentences, cfg.seed)
    layers = list(cfg.layers) if cfg.layers is not None else None
    sweep = sweep_layers(model, ds.texts, ds.labels, layers, positions=cfg.positions, batch_size=cfg.batch_size,
                         seed=cfg.seed, progress=progress, groups=ds.groups, cv=cfg.cv, test_size=cfg.test_size, C=cfg.C)
    sweep.metadata.update(dataset=ds.name, config=asdict(cfg))
    if out is not None:
        sweep.save(out)
    return sweep

"""The whole neurofeedback paradigm (Ji-An et al., 2025) on one model and layer:
capture -> axes and labels -> reporting -> implicit and explicit control -> metacognitive space."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

import metalens
from metalens.probes import figures
from metalens.probes.control import run_control
from metalens.probes.datasets import load_dataset
from metalens.probes.directions import DEFAULT_PCS, Axes, fit_axes, split_indices
from metalens.probes.reporting import run_reporting
from metalens.probes.space import summarize
from metalens.report import save_json, to_jsonable, write_report
from metalens.sites import resid_post


@dataclass
class NeurofeedbackConfig:
    """Settings of a run; the defaults take well under 20 minutes for a 270M model on 2 CPU cores."""

    dataset: str = "moral"
    layer: int | None = None  # None: the middle block
    positions: str = "mean"  # how a sentence's activation is pooled over its tokens (the paper: mean)
    max_sentences: int | None = 400  # balanced subsample of the dataset (None: all)
    fit_fraction: float = 0.5  # share of sentences that define the axes and medians, never tested
    pcs: tuple[int, ...] = DEFAULT_PCS
    logistic_axis: bool = True
    n_values: tuple[int, ...] = (0, 2, 4, 8, 16, 32)
    draws: int = 8
    n_test_min: int = 8
    implicit_targets: tuple[str, ...] | None = None  # None: every axis
    explicit_targets: tuple[str, ...] = ("LR", "PC1")
    control_examples: int = 16
    implicit_trials: int = 10
    explicit_trials: int = 4
    max_new_tokens: int = 20
    label_words: tuple[str, str] = ("0", "1")
    batch_size: int = 4
    seed: int = 0

    @classmethod
    def quick(cls, **overrides) -> "NeurofeedbackConfig":
        """A small run (under 2 minutes on CPU) that exercises every stage."""
        base = cls(max_sentences=120, pcs=(1, 8), n_values=(0, 2, 4, 8), draws=3, n_test_min=4,
                   implicit_targets=("LR",), explicit_targets=("LR",), control_examples=6,
                   implicit_trials=4, explicit_trials=1, max_new_tokens=10)
        return replace(base, **overrides)


@dataclass
class NeurofeedbackResult:
    """Everything a run measured, as one JSON-ready dict (`data`), plus the fitted axes."""

    data: dict
    axes: Axes | None = field(repr=False, default=None)

    @property
    def summary(self) -> dict:
        """Per-axis rows and counts of the metacognitive space (see `metalens.probes.space.summarize`)."""
        return self.data["summary"]

    def figures(self) -> list:
        """(title, figure) pairs of the report, in order."""
        d = self.data
        return [("Reporting accuracy vs N (learning curves)", figures.learning_curves(d)),
                ("Reporting cross-entropy vs N", figures.learning_curves(d, "cross_entropy")),
                ("Metacognitive space: reportability vs explained variance", figures.reportability_vs_variance(d)),
                ("Accuracy by axis and N", figures.accuracy_heatmap(d)),
                ("Control effect sizes", figures.control_effects(d))]

    def save(self, path: str | Path) -> Path:
        """Write results.json, report.html and axes/ into `path`; returns it."""
        out = Path(path)
        save_json(out / "results.json", self.data)
        if self.axes is not None:
            self.axes.save(out / "axes")
        write_report(out / "report.html", f"Neurofeedback: {self.data['metadata']['model']}", _sections(self),
                     self.data["metadata"])
        return out

    @classmethod
    def load(cls, path: str | Path) -> "NeurofeedbackResult":
        """Read results.json (and axes/ when present) from a folder written by `save`."""
        out = Path(path)
        if not (out / "results.json").exists():
            raise FileNotFoundError(f"No results.json in {out}: point at a folder written by run_neurofeedback(..., out=DIR).")
        axes = Axes.load(out / "axes") if (out / "axes").exists() else None
        return cls(json.loads((out / "results.json").read_text()), axes)


def _sections(result: NeurofeedbackResult) -> list:
    d, s = result.data, result.summary
    groups = d["data"].get("n_groups")
    prose = (f"Dataset '{d['config']['dataset']}', {d['data']['n_fit']} sentences fit the axes and medians, "
             f"{d['data']['n_pool']} disjoint sentences are shown and tested"
             + (f" (split by group: near-copies stay on one side; {groups} groups; no prompt holds two items of one group)"
                if groups is not None else "") + f". Layer {d['config']['layer']}, "
             f"{d['reporting']['metadata']['format']} prompts. Reportable axes: {s['n_reportable']} of {s['n_axes']}; "
             f"implicitly controllable: {s['n_implicit_controllable']}; explicitly controllable: "
             f"{s['n_explicit_controllable']} (specific: implicit {s['n_implicit_specific']}, explicit "
             f"{s['n_explicit_specific']}). {s['test']}\n\nN on the learning curves is the upper edge of a bin: "
             "a point at N averages the items that had more examples than the previous N and at most N.")
    agree = d["data"]["lr_human_agreement"]
    if agree is not None:
        prose += f" The LR axis' median split agrees with the human labels on {agree:.1%} of the pool sentences."
    rows = [{k: v for k, v in r.items()} for r in s["rows"]]
    figs = result.figures()
    return [("Summary", prose), ("Axes", rows), *figs[:2], figs[2], figs[3], figs[4],
            ("Implicit control effects", [{k: v for k, v in e.items() if k != "d_by_axis"} for e in d["implicit"]["effects"]]),
            ("Explicit control effects", [{k: v for k, v in e.items() if k != "d_by_axis"} for e in d["explicit"]["effects"]] if d.get("explicit") else []),
            ("Example reporting prompt", d["reporting"]["example_prompt"][:3000]),
            ("Example control prompt", d["implicit"]["example_prompt"][:3000])]


def run_neurofeedback(model, config: NeurofeedbackConfig | None = None, *, out: str | Path | None = None,
                      progress: bool = True) -> NeurofeedbackResult:
    """Run the paradigm on `model` at `config.layer` (default: the middle block); with `out`, save
    results.json, report.html and axes/ there."""
    if config is not None and not isinstance(config, NeurofeedbackConfig):
        raise TypeError(f"config must be a NeurofeedbackConfig, not {type(config).__name__}: call "
                        "run_neurofeedback(model, NeurofeedbackConfig(layer=9), out=DIR).")
    cfg = config or NeurofeedbackConfig()
    layer = model.check_layer(model.n_layers // 2 if cfg.layer is None else cfg.layer)
    cfg = replace(cfg, layer=layer)
    start = time.time()
    ds = load_dataset(cfg.dataset).balanced(cfg.max_sentences, cfg.seed)
    site = resid_post(layer)
    acts = metalens.capture(model, ds.texts, [site], positions=cfg.positions, batch_size=16, progress=progress)[site].float()
    fit, pool = split_indices(len(ds), cfg.fit_fraction, cfg.seed, groups=ds.groups)  # near-copies stay on one side
    human = np.asarray(ds.labels)
    axes = fit_axes(acts[fit], human[fit], cfg.pcs, logistic=cfg.logistic_axis, seed=cfg.seed,
                    metadata={**model.metadata(), "layer": layer, "site": site, "positions": cfg.positions})
    pool_labels = axes.labels(acts[pool]).numpy()  # [n_pool, n_axes]; thresholds come from the fit split
    pool_texts = [ds.texts[i] for i in pool]
    common = dict(label_words=cfg.label_words, batch_size=cfg.batch_size, groups=[ds.groups[i] for i in pool],
                  progress=progress)
    reporting = run_reporting(model, pool_texts, pool_labels, axes.names, n_values=cfg.n_values, draws=cfg.draws,
                              seed=cfg.seed, n_test_min=cfg.n_test_min, **common)
    implicit = run_control(model, layer, axes, pool_texts, pool_labels, list(cfg.implicit_targets or axes.names),
                           kind="implicit", n_examples=cfg.control_examples, trials=cfg.implicit_trials, seed=cfg.seed, **common)
    explicit_targets = [t for t in cfg.explicit_targets if t in axes.names]
    explicit = run_control(model, layer, axes, pool_texts, pool_labels, explicit_targets, kind="explicit",
                           n_examples=cfg.control_examples, trials=cfg.explicit_trials, seed=cfg.seed,
                           max_new_tokens=cfg.max_new_tokens, **common) if explicit_targets else None
    lr_agree = float((pool_labels[:, axes.index("LR")] == human[pool]).mean()) if "LR" in axes.names else float("nan")
    data = to_jsonable({
        "config": asdict(cfg),
        "metadata": {**model.metadata(), "layer": layer, "site": site, "seconds": round(time.time() - start, 1)},
        "data": {"dataset": ds.name, "n_fit": len(fit), "n_pool": len(pool), "fit_indices": fit, "pool_indices": pool,
                 "n_groups": len(set(ds.groups)), "groups": ds.groups,
                 "label_names": ds.label_names, "lr_human_agreement": lr_agree,
                 "pool_label_balance": dict(zip(axes.names, pool_labels.mean(0)))},
        "axes": {"names": axes.names, "explained_variance": axes.explained_variance, "thresholds": axes.thresholds},
        "reporting": reporting.to_dict(),
        "implicit": implicit.to_dict(),
        "explicit": explicit.to_dict() if explicit else None,
    })
    data["summary"] = to_jsonable(summarize(data))
    data["metadata"]["seconds"] = round(time.time() - start, 1)
    result = NeurofeedbackResult(data, axes)
    if out is not None:
        result.save(out)
    return result

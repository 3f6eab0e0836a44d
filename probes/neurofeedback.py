"""The whole neurofeedback paradigm (Ji-An et al., 2025) on one model and layer:
capture -> axes and labels -> reporting -> implicit and explicit control -> metacognitive space."""
from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

import metalens
from metalens.artifact import read_json
from metalens.probes import figures
from metalens.probes.control import measure_control, span_means_by_layer
from metalens.probes.datasets import load_dataset
from metalens.probes.directions import DEFAULT_PCS, Axes, fit_axes, fit_paper_axes, split_indices
from metalens.probes.features import (FEATURE_NAME, axis_cards, check_feature_targets, join_axes, load_axes_sae,
                                      parse_feature_spec, sae_axes)
from metalens.probes.flip_control import measure_flip_control
from metalens.probes.planted import PlantedController, PlantedReporter, standardised_scores
from metalens.probes.prompts import PROTOCOLS, render
from metalens.probes.report_sections import sections
from metalens.probes.reporting import average_reporting, measure_reporting
from metalens.probes.space import summarize
from metalens.report import save_json, to_jsonable, write_report
from metalens.sae.cards import FeatureCard, load_cards, save_cards
from metalens.sites import resid_post


PLANTED_STAGES = ("report", "control")

PAPER_SPAN = ("mean from after the assistant-turn tag through the end of the prompt, end-of-turn tokens included "
              "(paper context; a base model's fit prompt ends with the reply)")


@dataclass
class NeurofeedbackConfig:
    """Settings of a run; the defaults take well under 20 minutes for a 270M model on 2 CPU cores."""

    dataset: str | Path = "moral"  # a shipped set or a file `load_dataset` reads (ETHICS/true-false CSV, JSONL)
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
    # "strict" (metalens' design) or "paper" (Ji-An et al.'s: assistant-turn framing, axes fitted in that
    # context, projection/SD split at 0, saga LR, 2x2 flip control, precision over all PCs); see probes/README.md.
    protocol: str = "strict"
    layers: tuple[int, ...] | None = None  # paper protocol: also report at these layers, averaged (control stays at `layer`)
    max_tokens: int = 8192  # padded tokens per forward pass; a longer prompt runs alone
    # False: a PC beyond what the fit split allows is an error; True (the paper preset): such PCs are left out
    pcs_up_to_rank: bool = False
    # Sensitivity checks only (`metalens sensitivity neurofeedback`): an ability of this axis planted at this
    # strength (`metalens.probes.planted`) in one stage: "report" (a reporter in the reporting stage) or
    # "control" (a controller in the 2x2 control stages, paper protocol); None / 0.0 in every published run.
    planted_axis: str | None = None
    planted_strength: float = 0.0
    # SAE feature axes (`metalens.probes.features`): a dictionary folder (SAELens / Gemma Scope layout) reading
    # the residual stream leaving `layer`, and which of its features become axes F{i}, chosen on the fit split.
    sae: str | Path | None = None
    sae_features: str = "active:8,variable:8"
    cards: bool = True  # a feature card per SAE axis (`metalens.sae.cards`), read from the fit split's sentences
    card_texts: int = 200  # fit-split sentences the cards read (the first ones): one extra pass over them
    planted_stage: str = "report"

    def __post_init__(self):
        self.pcs, self.n_values = tuple(self.pcs), tuple(self.n_values)
        for name, low in (("draws", 1), ("n_test_min", 0), ("control_examples", 1), ("implicit_trials", 1),
                          ("explicit_trials", 1), ("max_new_tokens", 1), ("batch_size", 1), ("seed", 0),
                          ("max_tokens", 1), ("card_texts", 1)):
            _check_int(name, getattr(self, name), low)
        if self.max_sentences is not None:
            _check_int("max_sentences", self.max_sentences, 4)
        if self.layer is not None:
            _check_int("layer", self.layer, 0)
        if not 0 < self.fit_fraction < 1:
            raise ValueError(f"fit_fraction must be in (0, 1), got {self.fit_fraction}.")
        if not self.n_values:
            raise ValueError("n_values must name at least one N (examples before a tested item), e.g. (0, 2, 4).")
        for n in self.n_values:
            _check_int("each of n_values", n, 0)
        for k in self.pcs:
            _check_int("each of pcs (1-based principal components)", k, 1)
        if len(set(self.label_words)) != 2:
            raise ValueError(f"label_words must be two different words, got {self.label_words}.")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, not '{self.protocol}'.")
        if not isinstance(self.planted_strength, (int, float)) or not np.isfinite(self.planted_strength):
            raise ValueError(f"planted_strength must be a finite number, got {self.planted_strength!r}.")
        if self.planted_strength and self.planted_axis is None:
            raise ValueError("planted_strength needs planted_axis: name the axis the planted reporter reports (e.g. PC1).")
        if self.sae is not None:
            parse_feature_spec(self.sae_features)
            if self.protocol != "strict":
                raise ValueError("SAE feature axes run under the strict protocol (median split of the fit split); "
                                 "drop sae=... or use protocol='strict'.")
        if self.planted_stage not in PLANTED_STAGES:
            raise ValueError(f"planted_stage must be one of {PLANTED_STAGES}, not {self.planted_stage!r}.")
        if self.planted_stage == "control" and self.planted_axis is not None and self.protocol != "paper":
            raise ValueError("A planted controller is judged by the control verdict, which only the 2x2 flip design "
                             "gives: pass protocol='paper' (the strict protocol's label-only design reports a shift).")
        if self.layers is not None and self.protocol != "paper":
            raise ValueError("layers=... (reporting averaged over layers) is part of the paper protocol: "
                             "pass protocol='paper', or drop layers and set layer.")

    @classmethod
    def quick(cls, **overrides) -> "NeurofeedbackConfig":
        """A small run (under 2 minutes on CPU) that exercises every stage."""
        base = cls(max_sentences=120, pcs=(1, 8), n_values=(0, 2, 4, 8), draws=3, n_test_min=4,
                   implicit_targets=("LR",), explicit_targets=("LR",), control_examples=6,
                   implicit_trials=4, explicit_trials=1, max_new_tokens=10)
        return replace(base, **overrides)

    @classmethod
    def paper(cls, **overrides) -> "NeurofeedbackConfig":
        """The paper protocol at the paper's sizes, as far as the data and context allow: every
        sentence, a 60/40 fit/pool split, N up to 256 (capped by the pool's groups and the context),
        100 draws, control with 256 examples and 100 trials, PCs up to 512. Hours on a CPU: see the
        README for settings that fit in minutes."""
        base = cls(protocol="paper", max_sentences=None, fit_fraction=0.6, pcs=(1, 2, 4, 8, 32, 128, 512),
                   n_values=(0, 2, 4, 8, 16, 32, 64, 128, 256), draws=100, n_test_min=8, control_examples=256,
                   implicit_trials=100, explicit_trials=100, max_new_tokens=50, batch_size=1,
                   pcs_up_to_rank="pcs" not in overrides)
        return replace(base, **overrides)


@dataclass
class NeurofeedbackResult:
    """Everything a run measured, as one JSON-ready dict (`data`), plus the fitted axes."""

    data: dict
    axes: Axes | None = field(repr=False, default=None)
    cards: list[FeatureCard] = field(repr=False, default_factory=list)  # one per SAE axis, in axis order

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
        """Write results.json, report.html, axes/ and (with SAE axes) cards.json into `path`; returns it."""
        out = Path(path)
        save_json(out / "results.json", self.data)
        if self.axes is not None:
            self.axes.save(out / "axes")
        if self.cards:
            save_cards(self.cards, out / "cards.json")
        write_report(out / "report.html", f"Neurofeedback: {self.data['metadata']['model']}", sections(self),
                     self.data["metadata"])
        return out

    @classmethod
    def load(cls, path: str | Path) -> "NeurofeedbackResult":
        """Read results.json (and axes/, cards.json when present) from a folder written by `save`."""
        out = Path(path)
        if not (out / "results.json").exists():
            raise FileNotFoundError(f"No results.json in {out}: point at a folder written by run_neurofeedback(..., out=DIR).")
        axes = Axes.load(out / "axes") if (out / "axes").exists() else None
        cards = load_cards(out / "cards.json") if (out / "cards.json").exists() else []
        return cls(read_json(out / "results.json", "neurofeedback results"), axes, cards)


def _check_int(name: str, value, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")


def max_pc(n_fit: int, d_model: int | None = None) -> int:
    """The highest principal component a fit split of `n_fit` sentences (of width `d_model`) can have."""
    return n_fit - 1 if d_model is None else min(n_fit - 1, d_model)


def prepare_data(cfg: NeurofeedbackConfig, d_model: int | None = None):
    """(dataset, fit indices, pool indices, pcs) of a run, checked before any model work.

    Reads and subsamples `cfg.dataset`, splits it, and refuses PCs beyond what the fit split (and
    `d_model`) allows -- unless `cfg.pcs_up_to_rank`, where they are left out -- and target axes that
    no fitted axis will carry; with `cfg.sae`, reads the SAE and refuses one that does not read
    `cfg.layer`'s residual stream (when the layer is set). Cheap: the CLI calls it before loading the model.
    """
    ds = load_dataset(cfg.dataset).balanced(cfg.max_sentences, cfg.seed)
    fit, pool = split_indices(len(ds), cfg.fit_fraction, cfg.seed, groups=ds.groups)  # near-copies stay on one side
    top = max_pc(len(fit), d_model)
    pcs = cfg.pcs
    beyond = [k for k in pcs if k > top]
    if beyond and not cfg.pcs_up_to_rank:
        raise ValueError(f"pcs {beyond} exceed what the data allow: {len(fit)} fit sentences"
                         f"{f' of width {d_model}' if d_model else ''} give at most PC{top}. Ask for PCs up to "
                         f"{top}, or more sentences (max_sentences, a larger dataset).")
    pcs = tuple(k for k in pcs if k <= top)
    names = [f"PC{k}" for k in pcs] + (["LR"] if cfg.logistic_axis else [])

    def feature(name: str) -> bool:  # an SAE axis: which features exist is known once they are selected
        return cfg.sae is not None and FEATURE_NAME.fullmatch(name) is not None

    unknown = [t for t in (cfg.implicit_targets or ()) if t not in names and not feature(t)]
    unknown += [t for t in cfg.explicit_targets if not re.fullmatch(r"LR|PC[1-9][0-9]*", t) and not feature(t)]
    if cfg.planted_axis is not None and cfg.planted_axis not in names and not feature(cfg.planted_axis):
        unknown.append(cfg.planted_axis)
    if unknown:
        raise ValueError(f"Target axes {unknown} are not among the run's axes {names}: name axes from pcs "
                         "(PC1, PC8, ...), LR" + (", or SAE features (F17, ...)." if cfg.sae is not None else "."))
    if not names and cfg.sae is None:
        raise ValueError("No axis to fit: give pcs, logistic_axis=True or an SAE (sae=DIR).")
    if cfg.sae is not None:
        load_feature_sae(cfg)  # a bad folder, or one read at another layer, is refused before the model loads
    return ds, fit, pool, pcs


def load_feature_sae(cfg: NeurofeedbackConfig):
    """The SAE of `cfg.sae`, checked against `cfg.layer` when that is set (None: no SAE in the run)."""
    return None if cfg.sae is None else load_axes_sae(cfg.sae, cfg.layer)


def _check_targets(cfg: NeurofeedbackConfig, axes: Axes) -> None:
    """Refuse, before the long stages, target axes the fitted axes lack (an SAE feature that was not selected)."""
    wanted = [*(cfg.implicit_targets or ()), *cfg.explicit_targets, *([cfg.planted_axis] if cfg.planted_axis else [])]
    check_feature_targets(wanted, axes.names, cfg.sae_features)


def _plant(cfg: NeurofeedbackConfig, axes: Axes, acts, fit, pool) -> PlantedReporter | None:
    """The planted reporter a sensitivity run asks for (None in a published run)."""
    if cfg.planted_axis is None or cfg.planted_stage != "report":
        return None
    return PlantedReporter(cfg.planted_axis, float(cfg.planted_strength),
                           standardised_scores(axes, acts[fit], acts[pool], cfg.planted_axis))


def _plant_controller(cfg: NeurofeedbackConfig, axes: Axes, acts, fit, layer: int) -> PlantedController | None:
    """The planted controller a sensitivity run asks for (None in a published run)."""
    if cfg.planted_axis is None or cfg.planted_stage != "control":
        return None
    return PlantedController.for_axes(axes, acts[fit], cfg.planted_axis, cfg.planted_strength, layer)


def run_neurofeedback(model, config: NeurofeedbackConfig | None = None, *, out: str | Path | None = None,
                      progress: bool = True) -> NeurofeedbackResult:
    """Run the paradigm on `model` at `config.layer` (default: the middle block); with `out`, save
    results.json, report.html, axes/ and (with SAE axes and `config.cards`) cards.json there."""
    if config is not None and not isinstance(config, NeurofeedbackConfig):
        raise TypeError(f"config must be a NeurofeedbackConfig, not {type(config).__name__}: call "
                        "run_neurofeedback(model, NeurofeedbackConfig(layer=9), out=DIR).")
    cfg = config or NeurofeedbackConfig()
    layer = model.resolve_layers(cfg.layer)[0]
    if cfg.layers is not None:
        model.resolve_layers(list(cfg.layers))  # refuse a bad block before the long work
    cfg = replace(cfg, layer=layer)
    start = time.time()
    ds, fit, pool, pcs = prepare_data(cfg, model.d_model)  # pcs: those the fit split allows
    site = resid_post(layer)
    paper = cfg.protocol == "paper"
    human = np.asarray(ds.labels)
    meta = {**model.metadata(), "layer": layer, "site": site, "positions": cfg.positions, "protocol": cfg.protocol}
    pool_texts = [ds.texts[i] for i in pool]
    common = dict(label_words=cfg.label_words, batch_size=cfg.batch_size, groups=[ds.groups[i] for i in pool],
                  progress=progress)
    report_kw = dict(n_values=cfg.n_values, draws=cfg.draws, seed=cfg.seed, n_test_min=cfg.n_test_min,
                     protocol=cfg.protocol, max_tokens=cfg.max_tokens, **common)
    layer_info, cards = None, []
    if paper:
        # The paper's context: each sentence as the assistant's reply to a fixed user turn, its activation the
        # mean, as the authors' code has it, from after the assistant-turn tag through the end of the prompt
        # (end-of-turn tokens included); every layer of `layers` from the same forward passes.
        report_layers = [model.check_layer(x) for x in (cfg.layers or (layer,))]
        fit_prompts = [render(model, [t], [0], "fit", cfg.label_words, protocol="paper") for t in ds.texts]
        by_layer = span_means_by_layer(model, sorted({layer, *report_layers}), fit_prompts, 0, batch_size=16,
                                       max_tokens=cfg.max_tokens, span="reply")
        acts = by_layer[layer]
        meta["positions"] = PAPER_SPAN
        axes = fit_paper_axes(acts[fit], human[fit], cfg.pcs, logistic=cfg.logistic_axis, seed=cfg.seed, metadata=meta)
        all_pcs = fit_paper_axes(acts[fit], None, "all", logistic=False, seed=cfg.seed, metadata=meta)
        pool_labels = axes.labels(acts[pool]).numpy()
        runs, layer_info = [], []
        for rl in report_layers:
            ax = axes if rl == layer else fit_paper_axes(by_layer[rl][fit], human[fit], cfg.pcs, logistic=cfg.logistic_axis,
                                                          seed=cfg.seed, metadata={**meta, "layer": rl})
            if ax.names != axes.names:
                raise ValueError(f"Layer {rl} has axes {ax.names}, layer {layer} has {axes.names}: pick pcs within every layer's rank.")
            labels_rl = pool_labels if rl == layer else ax.labels(by_layer[rl][pool]).numpy()
            runs.append(measure_reporting(model, pool_texts, labels_rl, ax.names, plant=_plant(cfg, axes, acts, fit, pool),
                                          **report_kw))
            layer_info.append({"layer": rl, "explained_variance": ax.explained_variance, "thresholds": ax.thresholds,
                               "scales": ax.scales, "pool_label_balance": dict(zip(ax.names, labels_rl.mean(0)))})
        reporting = runs[0] if len(runs) == 1 else average_reporting(runs, report_layers)
        control, control_kw = measure_flip_control, {"pc_axes": all_pcs,
                                                      "plant": _plant_controller(cfg, axes, acts, fit, layer)}
    else:
        sae = load_feature_sae(cfg)
        caught = metalens.capture(model, ds.texts, [site], positions=cfg.positions, batch_size=16, progress=progress,
                                  sae=sae)
        acts = caught[site].float()
        axes = fit_axes(acts[fit], human[fit], cfg.pcs, logistic=cfg.logistic_axis, seed=cfg.seed, metadata=meta,
                        groups=[ds.groups[i] for i in fit]) if cfg.pcs or cfg.logistic_axis else None
        if sae is not None:  # features chosen, and their labels' medians set, on the fit rows alone
            features = caught[f"{sae.site}.features"].float()
            axes = join_axes(axes, sae_axes(sae, acts[fit], features[fit], cfg.sae_features, source=cfg.sae,
                                            metadata=meta))
        _check_targets(cfg, axes)
        if sae is not None and cfg.cards:  # one extra pass: which features to describe is known only now
            card_rows = [int(i) for i in fit[:cfg.card_texts]]
            cards = axis_cards(model, sae, axes.names, [ds.texts[i] for i in card_rows],
                               source=f"the first {len(card_rows)} fit-split sentences of '{ds.name}'")
        pool_labels = axes.labels(acts[pool]).numpy()  # [n_pool, n_axes]; thresholds come from the fit split
        reporting = measure_reporting(model, pool_texts, pool_labels, axes.names, plant=_plant(cfg, axes, acts, fit, pool),
                                      **report_kw)
        control, control_kw = measure_control, {}
    dropped = [k for k in pcs if f"PC{k}" not in axes.names]
    if dropped and not cfg.pcs_up_to_rank:
        raise ValueError(f"pcs {dropped} exceed the rank of the layer-{layer} activations of the fit split "
                         f"(axes fitted: {axes.names}): ask for fewer PCs.")
    implicit = control(model, layer, axes, pool_texts, pool_labels, list(cfg.implicit_targets or axes.names),
                       kind="implicit", n_examples=cfg.control_examples, trials=cfg.implicit_trials, seed=cfg.seed,
                       **control_kw, **common)
    explicit_targets = [t for t in cfg.explicit_targets if t in axes.names]
    explicit = control(model, layer, axes, pool_texts, pool_labels, explicit_targets, kind="explicit",
                       n_examples=cfg.control_examples, trials=cfg.explicit_trials, seed=cfg.seed,
                       max_new_tokens=cfg.max_new_tokens, **control_kw, **common) if explicit_targets else None
    lr_agree = float((pool_labels[:, axes.index("LR")] == human[pool]).mean()) if "LR" in axes.names else float("nan")
    data = to_jsonable({
        "protocol": cfg.protocol,
        "config": asdict(cfg),
        "metadata": {**model.metadata(), "layer": layer, "site": site, "protocol": cfg.protocol,
                     "seconds": round(time.time() - start, 1)},
        "data": {"dataset": ds.name, "n_fit": len(fit), "n_pool": len(pool), "fit_indices": fit, "pool_indices": pool,
                 "n_groups": len(set(ds.groups)), "groups": ds.groups,
                 "label_names": ds.label_names, "lr_human_agreement": lr_agree,
                 "pool_label_balance": dict(zip(axes.names, pool_labels.mean(0)))},
        "axes": {"names": axes.names, "explained_variance": axes.explained_variance, "thresholds": axes.thresholds,
                 "rule": axes.rule, "scales": axes.scales, "metadata": {k: v for k, v in axes.metadata.items()
                                                                         if k.startswith("lr_")},
                 "sae": axes.metadata.get("sae")},
        "layers": layer_info,
        "cards": {"file": "cards.json", "features": [c.feature for c in cards], "texts": cards[0].corpus,
                  "dataset_indices": card_rows} if cards else None,
        "reporting": reporting.to_dict(),
        "implicit": implicit.to_dict(),
        "explicit": explicit.to_dict() if explicit else None,
    })
    data["summary"] = to_jsonable(summarize(data))
    data["metadata"]["seconds"] = round(time.time() - start, 1)
    result = NeurofeedbackResult(data, axes, cards)
    if out is not None:
        result.save(out)
    return result

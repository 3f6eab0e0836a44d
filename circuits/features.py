"""`run_features`: which SAE features at one site carry a task's metric, checked by exact patching, with cards.

Attribution patching (or its integrated-gradients variant) scores every feature and the SAE's error
term on every pair (`feature_attribution.py`), beside the exact effect of patching the whole site; the
features with the largest |mean score| are then patched exactly, one at a time, and each gets a feature card
(top-activating contexts in a corpus, logit effect, activation histogram; `metalens.sae.cards`).
As a control against judging the estimate only where it is largest, `controls` other features whose
activations the corruption moves (drawn at random) are patched exactly too. Means over pairs carry
percentile-bootstrap intervals over pairs (`metalens.stats.bootstrap_ci`; no bounds below 10 pairs);
the scores and exact patching are compared by Spearman's rho (over the top features, and over top and
controls together) and by how often their signs agree.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from metalens.artifact import read_artifact, read_json, write_artifact
from metalens.circuits.feature_attribution import (attribute_features, check_sae_fits, patch_features_exact,
                                                   patch_site_exact)
from metalens.circuits.heads import spearman
from metalens.circuits.tasks import ContrastTask, make_task
from metalens.precision import in_float32
from metalens.sae.cards import FeatureCard, feature_cards, load_cards, save_cards
from metalens.stats import bootstrap_ci

# features.safetensors: attribution, f_clean, f_corrupted [n_pairs, d_sae]; exact [n_pairs, n_top]; error, site_total [n_pairs]
ARTIFACT = "features"
METHODS = ("attribution", "ig")
FORMAT_VERSION = 1


@dataclass
class FeaturesConfig:
    """What `run_features` scores: the task and its pairs, how many top features to check and card."""

    task: str | ContrastTask = "greater-than"
    n: int = 16  # prompt pairs (for a named task)
    metric: str | None = None  # None: the task's own (prob_diff for greater-than, logit_diff otherwise)
    seed: int = 0
    method: str = "attribution"  # or "ig": integrated gradients over the site activation, `ig_steps` points
    ig_steps: int = 5
    top: int = 10  # features (largest |mean attribution|) patched exactly and given cards
    controls: int = 5  # other features the corruption moves, drawn at random (seed), patched exactly too
    n_boot: int = 1000  # bootstrap resamples of the pairs
    cards: bool = True
    data: str | None = None  # the cards' corpus (see metalens.sae.read_corpus); None: Python's help texts
    card_texts: int = 200  # corpus texts the cards read (the first ones)
    max_length: int = 64  # tokens per corpus text
    n_contexts: int = 8  # top contexts per card

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"Unknown method {self.method!r}: use one of {METHODS}.")
        for name, low in (("n", 1), ("seed", 0), ("ig_steps", 1), ("top", 1), ("controls", 0), ("n_boot", 0), ("card_texts", 1), ("max_length", 2),
                          ("n_contexts", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
        if self.metric == "kl":
            raise ValueError("metric 'kl' has a zero gradient at the clean run, so attribution patching scores every "
                             "feature 0: use logit_diff, logprob or prob_diff.")

    def to_dict(self) -> dict:
        """JSON-ready fields (a task object is recorded by name)."""
        return {**asdict(self), "task": self.task.name if isinstance(self.task, ContrastTask) else self.task}


@dataclass
class FeaturesResult:
    """Per-feature attribution of one task at one SAE site, the exact check of the top features, their cards."""

    attribution: Tensor  # [n_pairs, d_sae] estimated metric change per pair when the feature is patched
    error: Tensor  # [n_pairs] the same for the SAE's error term
    site_total: Tensor  # [n_pairs] exact metric change when the whole site is patched from corrupted
    exact: Tensor  # [n_pairs, n_top + n_controls] exact metric change, columns: `top_features`, then `controls`
    f_clean: Tensor  # [n_pairs, d_sae] each feature's activation summed over the clean prompt's tokens
    f_corrupted: Tensor  # [n_pairs, d_sae] the same on the corrupted prompt
    top_features: list[int]  # by |mean attribution|, largest first
    controls: list[int]  # random other features the corruption moves
    rows: list[dict]  # one per checked feature (top, then controls): means with intervals, sign agreement
    totals: dict  # "site_total", "features_sum", "error": means over pairs with intervals
    spearman_vs_exact: float  # over the top features' means
    spearman_with_controls: float  # over top features and controls together
    sign_agreement: float  # share of top features whose mean attribution and exact change share a sign
    cards: list[FeatureCard]
    task: ContrastTask
    config: FeaturesConfig
    seconds: dict[str, float]
    metadata: dict = field(default_factory=dict)

    def save(self, path) -> Path:
        """Write features.safetensors/.json, results.json, cards.json and report.html into `path`; returns it."""
        from metalens.report import save_json

        path = Path(path)
        tensors = {"attribution": self.attribution, "error": self.error, "site_total": self.site_total,
                   "exact": self.exact, "f_clean": self.f_clean, "f_corrupted": self.f_corrupted}
        write_artifact(path, ARTIFACT, tensors, self.metadata, version=FORMAT_VERSION)
        save_json(path / "results.json", {
            "format": {"name": "features-results", "version": FORMAT_VERSION},
            "config": self.config.to_dict(), "task": self.task.to_dict(), "metadata": self.metadata,
            "seconds": self.seconds, "top_features": self.top_features, "controls": self.controls,
            "features": self.rows, "totals": self.totals, "spearman_vs_exact": self.spearman_vs_exact,
            "spearman_with_controls": self.spearman_with_controls, "sign_agreement": self.sign_agreement,
        })
        save_cards(self.cards, path / "cards.json")
        _report(path / "report.html", self)
        return path

    @classmethod
    def load(cls, path) -> "FeaturesResult":
        """The result `save` wrote into `path`."""
        path = Path(path)
        tensors, meta = read_artifact(path, ARTIFACT, "point at a directory written by run_features or "
                                      "FeaturesResult.save.", max_version=FORMAT_VERSION)
        meta.pop("format", None)
        results = read_json(path / "results.json", "features results")
        return cls(tensors["attribution"], tensors["error"], tensors["site_total"], tensors["exact"], tensors["f_clean"],
                   tensors["f_corrupted"], results["top_features"], results["controls"], results["features"],
                   results["totals"], _number(results["spearman_vs_exact"]), _number(results["spearman_with_controls"]),
                   _number(results["sign_agreement"]), load_cards(path / "cards.json"),
                   ContrastTask.from_dict(results["task"]), FeaturesConfig(**results["config"]), results["seconds"], meta)


def _number(value) -> float:
    """A float read back from JSON, where NaN was written as null."""
    return float("nan") if value is None else float(value)


def _interval(values: np.ndarray, n_boot: int, seed: int) -> dict:
    """Mean over pairs with its percentile-bootstrap interval (pairs are the units; no bounds with n_boot 0)."""
    if n_boot == 0:
        return {"mean": float(values.mean()), "low": float("nan"), "high": float("nan"), "n": len(values),
                "method": "not computed: n_boot 0"}
    ci = bootstrap_ci(lambda rows: float(values[rows].mean()), np.arange(len(values)), n_boot=n_boot, seed=seed)
    return {"mean": ci.estimate, "low": ci.low, "high": ci.high, "n": ci.n, "method": ci.method}


def _controls(f_clean: Tensor, f_corr: Tensor, top: list[int], k: int, seed: int) -> list[int]:
    """Up to k features outside `top` whose summed activation differs between clean and corrupted on some
    pair, drawn with numpy's generator of `seed` (sorted)."""
    moved = ((f_clean - f_corr).abs().sum(0) > 0).nonzero().flatten().tolist()  # [d_sae] -> indices
    pool = [i for i in moved if i not in set(top)]
    if not pool or k == 0:
        return []
    return sorted(np.random.default_rng(seed).choice(pool, size=min(k, len(pool)), replace=False).tolist())


def run_features(model, sae, config: FeaturesConfig | None = None, *, out=None, progress: bool = True) -> FeaturesResult:
    """Attribute the config's task to `sae`'s features, patch the top ones exactly, build their cards; with
    `out`, save results and report there. Computed in float32 whatever the model's dtype (restored after)."""
    cfg = config or FeaturesConfig()
    with in_float32(model):
        sae = check_sae_fits(model, sae)  # refused before any long work
        task = cfg.task if isinstance(cfg.task, ContrastTask) else make_task(cfg.task, model.tokenizer, n=cfg.n,
                                                                             seed=cfg.seed, metric=cfg.metric)
        seconds = {}
        start = time.perf_counter()
        scored = attribute_features(model, task, sae, cfg.method, cfg.ig_steps)
        attribution, f_clean, f_corr = scored.scores, scored.f_clean, scored.f_corrupted
        seconds[cfg.method] = time.perf_counter() - start
        if not torch.isfinite(attribution).all():
            raise ValueError(f"Feature attributions on task '{task.name}' are not finite: the model overflowed or the "
                             "metric is undefined on its pairs; check the pairs.")
        mean = attribution.mean(0)  # [d_sae]
        if not mean.any():
            raise ValueError(f"Every feature scores 0 on task '{task.name}': no feature at {sae.site} differs between "
                             "the clean and corrupted prompts where the metric is sensitive; pick another site or task.")
        top = mean.abs().topk(min(cfg.top, sae.d_sae)).indices.tolist()
        top = [i for i in top if mean[i] != 0] or top[:1]
        controls = _controls(f_clean, f_corr, top, cfg.controls, cfg.seed)
        start = time.perf_counter()
        exact = patch_features_exact(model, task, sae, top + controls)  # [n_pairs, n_top + n_controls]
        site_total = patch_site_exact(model, task, sae)  # [n_pairs]
        seconds["exact"] = time.perf_counter() - start
        cards = []
        if cfg.cards:
            from metalens.sae.corpus import read_corpus

            texts, source = read_corpus(cfg.data)
            start = time.perf_counter()
            cards = feature_cards(model, sae, top, texts[:cfg.card_texts], corpus=source, n_contexts=cfg.n_contexts,
                                  max_length=cfg.max_length, progress=progress)
            seconds["cards"] = time.perf_counter() - start
    checked = top + controls
    a, e = attribution[:, checked].numpy(), exact.numpy()
    rows = []
    for j, feature in enumerate(checked):
        rows.append({"feature": feature, "role": "top" if j < len(top) else "control",
                     "attribution": _interval(a[:, j], cfg.n_boot, cfg.seed),
                     "exact": _interval(e[:, j], cfg.n_boot, cfg.seed),
                     "pairs_sign_agree": float(np.mean(np.sign(a[:, j]) == np.sign(e[:, j]))),
                     "clean_activation": float(f_clean[:, feature].mean()),
                     "corrupted_activation": float(f_corr[:, feature].mean())})
    totals = {"site_total": _interval(site_total.numpy(), cfg.n_boot, cfg.seed),
              "features_sum": _interval(attribution.sum(1).numpy(), cfg.n_boot, cfg.seed),
              "error": _interval(scored.error.numpy(), cfg.n_boot, cfg.seed)}
    n_top = len(top)
    rho = spearman(attribution.mean(0)[top], exact[:, :n_top].mean(0)) if n_top > 1 else float("nan")
    rho_all = spearman(attribution.mean(0)[checked], exact.mean(0)) if len(checked) > 1 else float("nan")
    agree = float(np.mean(np.sign(a[:, :n_top].mean(0)) == np.sign(e[:, :n_top].mean(0))))
    meta = {**model.metadata(), "task": task.name, "metric": task.metric, "n_pairs": len(task), "site": sae.site,
            "out_site": sae.out_site, "d_sae": sae.d_sae, "architecture": sae.architecture,
            "sae_model": sae.model, "method": cfg.method, "steps": scored.steps, "compute_dtype": "float32"}
    result = FeaturesResult(attribution, scored.error, site_total, exact, f_clean, f_corr, top, controls, rows, totals,
                            rho, rho_all, agree, cards, task, cfg, seconds, meta)
    if out is not None:
        result.save(out)
    return result


def _report(path: Path, result: FeaturesResult) -> None:
    import plotly.graph_objects as go

    from metalens.report import write_report
    from metalens.stats import bounds_text

    metric = result.metadata.get("metric", "metric")
    method = result.config.method
    how = ("gradient at the clean run" if method == "attribution" else
           f"gradient averaged over {result.config.ig_steps} points from the corrupted site activation to the clean one")

    def cell(ci: dict) -> str:
        return f"{ci['mean']:+.4f} {bounds_text(ci['low'], ci['high'], ci['n'], '.4f')}"

    cards = {c.feature: c for c in result.cards}
    table = [{"feature": r["feature"], "picked as": r["role"], f"{method} ({metric} change)": cell(r["attribution"]),
              "exact patching": cell(r["exact"]), "pairs where signs agree": r["pairs_sign_agree"],
              "clean activation": r["clean_activation"], "corrupted activation": r["corrupted_activation"],
              "top context": cards[r["feature"]].context_text(0) if r["feature"] in cards and cards[r["feature"]].contexts
              else "",
              "top tokens": " ".join(repr(t["token"]) for t in cards[r["feature"]].top_tokens[:5])
              if r["feature"] in cards else ""}
             for r in result.rows]
    fig = go.Figure()
    names = [f"{r['feature']}{'' if r['role'] == 'top' else ' (control)'}" for r in result.rows]
    for key, color in (("attribution", "#4c78a8"), ("exact", "#f58518")):
        means = [r[key]["mean"] for r in result.rows]
        has = all(r[key]["low"] is not None and np.isfinite(r[key]["low"]) for r in result.rows)
        err = [[r[key]["high"] - r[key]["mean"] for r in result.rows],
               [r[key]["mean"] - r[key]["low"] for r in result.rows]] if has else None
        fig.add_trace(go.Bar(x=names, y=means, name=method if key == "attribution" else key, marker_color=color,
                             error_y={"type": "data", "array": err[0], "arrayminus": err[1]} if has else None))
    fig.update_layout(barmode="group", xaxis_title="feature", yaxis_title=f"{metric} change (mean over pairs)",
                      xaxis_type="category")
    summary = (f"Site {result.metadata.get('site')}, {result.metadata.get('d_sae')} features, task "
               f"'{result.task.name}' ({len(result.task)} pairs, metric {metric}). Scores by {method} ({how}, x the "
               f"activation difference; SAE spliced in with its error term), checked by exact patching of the top "
               f"{len(result.top_features)} features: Spearman {result.spearman_vs_exact:.3f}, signs agree on "
               f"{result.sign_agreement:.0%} of them; with {len(result.controls)} random other features the corruption "
               f"moves (controls), Spearman {result.spearman_with_controls:.3f}. Intervals: percentile bootstrap over "
               "pairs (none below 10 pairs).")
    totals = [{"what": what, f"{metric} change": cell(result.totals[key])} for key, what in (
        ("site_total", "exact: the whole site patched from corrupted"),
        ("features_sum", f"{method}: sum over all {result.metadata.get('d_sae')} features"),
        ("error", f"{method}: the SAE's error term"))]
    sections = [("Summary", summary), ("Top features and controls", table),
                ("The site's total effect and how the scores share it (with ig, features + error ~ total)", totals),
                (f"{method} vs exact patching of the top features and the controls", fig)]
    for card in result.cards:
        sections.append((f"Feature {card.feature}: card ({card.corpus[:80]})", card.figure()))
    sections.append(("Task examples", [{"clean": c, "corrupted": x, "answer": a, "wrong": w} for c, x, a, w in
                                        list(zip(result.task.clean, result.task.corrupted, result.task.answers,
                                                 result.task.wrong))[:5]]))
    write_report(path, f"Features for task '{result.task.name}' on {result.metadata.get('model', '?')}", sections,
                 result.metadata)

"""SAE feature axes for neurofeedback: a sparse dictionary's features as target axes beside PCs and LR.

Feature i of an SAE reads the residual stream through its encoder column w_i = W_enc[:, i]:
its pre-activation is  pre_i(x) = (x - b_dec * apply_b_dec_to_input) . w_i + b_enc[i],  and its
activation is the architecture's nonlinearity of that. The feature's axis is the unit *encoder*
direction u_i = w_i / |w_i|, not its decoder row: the decoder row is what the feature writes back,
and in an overcomplete dictionary decoder rows overlap, so a projection on one mixes in every
feature it overlaps; the encoder column is the direction the feature is read from.

Projection: on a sentence's pooled activation x (the same mean residual over its tokens as PC and
LR axes, in the fit, reporting and control stages alike) the axis reads
    (x - center) . u_i = (pre_i(x) - pre_i(center)) / |w_i|,
the feature's pre-activation, shifted and rescaled (`encoder_norm`, `pre_at_center` in the
metadata undo it). pre_i is affine, so pre_i(x) is also the mean of the feature's per-token
pre-activations over the sentence. Labels are the fit split's median split, as for a PC. The
activation is non-decreasing in the pre-activation (ReLU, JumpReLU; under TopK it also depends on
the other features' ranks), so the split is the split of the feature's activation wherever the
feature fires on more than half the fit sentences; below its firing threshold the pre-activation
still orders the sentences (by how near the feature is to firing) and keeps the labels balanced.
How well the linear read tracks the feature's actual activation is measured per axis on the fit
split (`rank_corr_with_activation`, `label_agreement_with_activation`).

Selection (`select_features`) sees only the fit split's feature activations: each sentence's
activation is the feature's activation pooled over the sentence's tokens as the run pools the
residual (`NeurofeedbackConfig.positions`: the mean over tokens by default, the last token with
"last"), i.e. what `metalens.capture(..., positions=..., sae=...)` returns.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from metalens.probes.directions import Axes
from metalens.sites import resid_post, resid_pre

RULES = {"active": "highest mean activation over the fit sentences",
         "variable": "highest variance of the activation across the fit sentences"}
FEATURE_NAME = re.compile(r"F(0|[1-9][0-9]*)")
# Run-time normalisations under which the pre-activation stays affine in the residual stream.
LINEAR_NORMALIZATIONS = ("none", "expected_average_only_in")
PROJECTION = ("projection = (pooled activation - fit mean) . unit encoder column = (pre-activation - its value at "
              "the fit mean) / |encoder column|; label = above the fit split's median")
SPEC_HELP = ("comma-separated items, each a feature index (e.g. 17) or RULE:K with RULE active (highest mean "
             "activation on the fit split) or variable (highest variance there), e.g. active:8,variable:8; items are "
             "taken in order and a feature already taken is skipped")


def feature_name(index: int) -> str:
    """The axis name of SAE feature `index`: `F17`."""
    return f"F{index}"


def parse_feature_spec(spec: str) -> list[tuple[str, int]]:
    """[(rule, k) or ("index", i)] from a spec such as "active:8,variable:8" or "17,240"; see `SPEC_HELP`."""
    items = [p.strip() for p in str(spec).split(",") if p.strip()]
    if not items:
        raise ValueError(f"SAE feature spec {spec!r} names no feature: give {SPEC_HELP}.")
    out = []
    for item in items:
        rule, sep, k = item.partition(":")
        if sep:
            if rule not in RULES or not k.isdigit() or int(k) < 1:
                raise ValueError(f"SAE feature spec item {item!r}: write RULE:K with RULE one of {sorted(RULES)} and "
                                 f"K >= 1 (e.g. active:16), or a feature index.")
            out.append((rule, int(k)))
        elif item.isdigit():
            out.append(("index", int(item)))
        else:
            raise ValueError(f"SAE feature spec item {item!r} is neither a feature index nor RULE:K: give {SPEC_HELP}.")
    indices = [i for rule, i in out if rule == "index"]
    if len(set(indices)) != len(indices):
        raise ValueError(f"SAE feature spec {spec!r} repeats a feature index.")
    return out


def check_sae_site(sae, layer: int, source: str | Path = "the SAE") -> None:
    """Refuse an SAE that does not read the residual stream leaving block `layer` (what neurofeedback
    pools), or whose pre-activation is not affine in it."""
    want = resid_post(layer)
    same = {want, resid_pre(layer + 1)}  # the stream leaving block L enters block L+1
    if sae.site not in same:
        found = re.fullmatch(r"blocks\.(\d+)\..+", sae.site or "")
        block = int(found[1]) if found else None
        read_at = {resid_post(block): block, resid_pre(block): block - 1} if found else {}
        if read_at.get(sae.site, -1) >= 0:
            raise ValueError(f"{source} reads {sae.site!r}, but neurofeedback at layer {layer} reads {want!r}: run "
                             f"neurofeedback with --layers {read_at[sae.site]}, or pass an SAE trained on {want}.")
        raise ValueError(f"{source} reads {sae.site!r}, but neurofeedback at layer {layer} reads the residual stream "
                         f"{want!r}: pass an SAE trained on {want} (or on another block's residual stream, with "
                         "--layers set to that block).")
    if sae.is_transcoder:
        raise ValueError(f"{source} is a transcoder ({sae.site} -> {sae.out_site}): neurofeedback axes need an SAE "
                         "that reads and reconstructs the residual stream.")
    if sae.normalize_activations not in LINEAR_NORMALIZATIONS:
        raise ValueError(f"{source} normalises its input per token ({sae.normalize_activations!r}), so its "
                         "pre-activation is not a direction of the residual stream: use an SAE with "
                         f"normalize_activations in {list(LINEAR_NORMALIZATIONS)}.")


def load_axes_sae(path: str | Path, layer: int | None):
    """The SAE at `path` (SAELens / Gemma Scope folder), checked against the neurofeedback `layer` when it is set."""
    from metalens.sae import load_sae

    sae = load_sae(path)
    if layer is not None:
        check_sae_site(sae, layer, f"The SAE at {path}")
    return sae


def check_feature_targets(wanted, names, spec: str) -> None:
    """Refuse target axes `wanted` that name an SAE feature absent from the fitted axes `names`."""
    missing = [t for t in wanted if FEATURE_NAME.fullmatch(t) and t not in names]
    if missing:
        raise ValueError(f"Target axes {missing} are not among the selected SAE features "
                         f"{[n for n in names if FEATURE_NAME.fullmatch(n)]}: name selected ones, or select "
                         f"them (sae_features={spec!r} plus their indices).")


def select_features(feature_acts_fit, spec: str) -> list[tuple[int, str]]:
    """[(feature index, the spec item that chose it)] from the fit split's feature activations
    `feature_acts_fit` [n_fit, d_sae] (pass the fit split only, never tested sentences).

    Rules rank the features that fire on at least one fit sentence (a never-active feature has no
    activation to split); ties keep the lower index. An explicit index is taken as given.
    """
    f = torch.as_tensor(feature_acts_fit, dtype=torch.float64)  # [n_fit, d_sae]
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"feature_acts_fit must be [n_fit >= 2, d_sae]; got {tuple(f.shape)}.")
    d_sae = f.shape[1]
    alive = (f > 0).any(0)
    score = {"active": f.mean(0), "variable": f.var(0)}
    chosen: list[tuple[int, str]] = []
    for rule, k in parse_feature_spec(spec):
        if rule == "index":
            if k >= d_sae:
                raise ValueError(f"SAE feature {k} does not exist: this SAE has features 0-{d_sae - 1}.")
            if k not in [i for i, _ in chosen]:
                chosen.append((k, str(k)))
            continue
        taken = torch.zeros(d_sae, dtype=torch.bool)
        taken[[i for i, _ in chosen]] = True
        pool = torch.nonzero(alive & ~taken).flatten()
        if len(pool) < k:
            raise ValueError(f"{rule}:{k} asks for {k} features, but only {len(pool)} more fire on any of the "
                             f"{len(f)} fit sentences: ask for fewer, or use more sentences (max_sentences).")
        order = sorted(pool.tolist(), key=lambda i: (-float(score[rule][i]), i))
        chosen += [(i, f"{rule}:{k}") for i in order[:k]]
    return chosen


def sae_axes(sae, acts_fit, feature_acts_fit, spec: str, *, source: str | Path | None = None,
             max_levels: int = 4, metadata: dict | None = None) -> Axes:
    """Axes `F{i}` for the features `select_features(feature_acts_fit, spec)` picks (see the module
    docstring for the direction, projection and label). `acts_fit` [n_fit, d_model] are the fit
    split's pooled activations at the SAE's site, `feature_acts_fit` [n_fit, d_sae] its features'
    sentence-mean activations; nothing else is read. Centered at the fit mean, like `fit_axes`, so
    the two join (`join_axes`)."""
    X = torch.as_tensor(acts_fit, dtype=torch.float64)  # [n_fit, d_model]
    F = torch.as_tensor(feature_acts_fit, dtype=torch.float64)  # [n_fit, d_sae]
    if X.ndim != 2 or len(X) < 4 or X.shape[1] != sae.d_in:
        raise ValueError(f"acts_fit must be [n >= 4, {sae.d_in} (the SAE's d_in)]; got {tuple(X.shape)}.")
    if F.shape != (len(X), sae.d_sae):
        raise ValueError(f"feature_acts_fit must be [{len(X)}, {sae.d_sae}] (one row per fit sentence, one column per "
                         f"feature); got {tuple(F.shape)}.")
    chosen = select_features(F, spec)
    idx = [i for i, _ in chosen]
    W = sae.W_enc.detach().double().cpu()[:, idx]  # [d_model, n_axes]
    norms = W.norm(dim=0)  # [n_axes]
    if (norms == 0).any():
        dead = [i for i, n in zip(idx, norms) if n == 0]
        raise ValueError(f"SAE features {dead} have a zero encoder column: they read nothing; choose other features.")
    directions = (W / norms).T  # [n_axes, d_model]
    center = X.mean(0)
    Xc = X - center
    proj = Xc @ directions.T  # [n_fit, n_axes]
    total = (Xc**2).sum()
    pre_center = sae.pre_acts(center.float().unsqueeze(0)).double()[0, idx]  # [n_axes]
    thresholds = torch.quantile(proj, 0.5, dim=0)
    acts = F[:, idx]  # [n_fit, n_axes]: the features' actual activations on the fit sentences
    rows = []
    for a, (i, item) in enumerate(chosen):
        act = acts[:, a].numpy()
        agree = float(((proj[:, a] > thresholds[a]).numpy() == (act > np.median(act))).mean())
        rows.append({"axis": feature_name(i), "feature": i, "selected_by": item,
                     "encoder_norm": float(norms[a]), "pre_at_center": float(pre_center[a]),
                     "fit_mean_activation": float(act.mean()), "fit_activation_sd": float(act.std()),
                     "fit_firing_share": float((act > 0).mean()),
                     "rank_corr_with_activation": _spearman(proj[:, a].numpy(), act),
                     "label_agreement_with_activation": agree})
    info = {"path": None if source is None else str(source), "site": sae.site, "architecture": sae.architecture,
            "d_sae": sae.d_sae, "sae_model": sae.model, "selection": spec,
            "rules": {k: v for k, v in RULES.items() if any(r["selected_by"].startswith(k) for r in rows)},
            "direction": "unit encoder column W_enc[:, i]", "projection": PROJECTION,
            "selection_data": "fit split only: each sentence's per-token feature activations averaged over its tokens",
            "features": rows}
    quantiles = {str(q): [torch.quantile(proj, j / q, dim=0).float().tolist() for j in range(1, q)]
                 for q in range(3, max_levels + 1)}
    meta = {"n_fit": len(X), "quantiles": quantiles, **(metadata or {}), "sae": info}
    return Axes([feature_name(i) for i in idx], directions.float(), center.float(),
                ((proj**2).sum(0) / total).float(), thresholds.float(), meta)


def join_axes(first: Axes | None, second: Axes) -> Axes:
    """`first`'s axes followed by `second`'s (same center and median rule), one `Axes`; `second` alone when
    `first` is None. Per-level quantiles are joined axis by axis; `second`'s extra metadata keys are kept."""
    if first is None:
        return second
    if first.rule != "median" or second.rule != "median" or first.scales is not None or second.scales is not None:
        raise ValueError("join_axes joins median-rule axes (fit_axes, sae_axes); the paper rule's axes carry scales.")
    if not torch.equal(first.center, second.center):
        raise ValueError("The axes were fitted on different sentences (their centers differ): fit both on one fit split.")
    clash = sorted(set(first.names) & set(second.names))
    if clash:
        raise ValueError(f"Axis names {clash} appear in both sets of axes.")
    q1, q2 = first.metadata.get("quantiles", {}), second.metadata.get("quantiles", {})
    quantiles = {q: [a + b for a, b in zip(q1[q], q2[q])] for q in q1 if q in q2}
    meta = {**first.metadata, **{k: v for k, v in second.metadata.items() if k not in first.metadata},
            "quantiles": quantiles}
    return Axes(first.names + second.names, torch.cat([first.directions, second.directions]), first.center,
                torch.cat([first.explained_variance, second.explained_variance]),
                torch.cat([first.thresholds, second.thresholds]), meta)


def feature_table(axes_metadata: dict) -> list[dict]:
    """One row per SAE axis (name, feature index, SAE path, site, selection) for reports; [] without SAE axes."""
    info = axes_metadata.get("sae")
    if not info:
        return []
    return [{"axis": r["axis"], "feature": r["feature"], "sae": info["path"], "site": info["site"],
             "selected_by": r["selected_by"], **{k: v for k, v in r.items() if k not in ("axis", "feature", "selected_by")}}
            for r in info["features"]]


def axis_cards(model, sae, names, texts: list[str], *, source: str, n_contexts: int = 10) -> list:
    """[FeatureCard] (`metalens.sae.cards`), one per SAE axis `F<i>` among the axis `names`, in their order, read
    from `texts` alone (the run passes fit-split sentences: no tested sentence describes a feature), whole (not
    truncated), as the run's capture reads them; [] when no axis is a feature."""
    from metalens.sae.cards import feature_cards

    features = [int(n[1:]) for n in names if FEATURE_NAME.fullmatch(n)]
    if not features:
        return []
    return feature_cards(model, sae, features, texts, corpus=source, n_contexts=n_contexts, max_length=None,
                         progress=False)


def card_glance(card) -> dict:
    """A card's top context and top-5 logit-effect tokens, as two table cells ({} without a card)."""
    if card is None:
        return {}
    return {"top context": card.context_text(0) if card.contexts else "",
            "top tokens (logit effect)": " ".join(repr(t["token"]) for t in card.top_tokens[:5])}


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)

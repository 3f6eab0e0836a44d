"""The sections of a neurofeedback run's report.html: summary prose, axis tables, figures, SAE feature cards, control
effects and example prompts, all read from the `NeurofeedbackResult` (its results dict and cards)."""
from __future__ import annotations

from metalens.probes.features import card_glance, feature_table


def _brief(effect: dict) -> dict:
    return {k: v for k, v in effect.items() if k not in ("d_by_axis", "dz_by_pc", "d_by_pc")}


def sections(result) -> list:
    """(title, content) pairs of a `NeurofeedbackResult`'s report.html, in order."""
    d, s = result.data, result.summary
    groups = d["data"].get("n_groups")
    paper = d.get("protocol", "strict") == "paper"
    prose = (("Protocol: paper (Ji-An et al., 2025): sentences framed as the model's own assistant replies, labels "
              "= projection / fit SD split at 0, 2x2 (imposed x flipped labels) control, precision over all PCs. "
              if paper else "Protocol: strict (metalens). ")
             + f"Dataset '{d['config']['dataset']}', {d['data']['n_fit']} sentences fit the axes and thresholds, "
             f"{d['data']['n_pool']} disjoint sentences are shown and tested"
             + (f" (split by group: near-copies stay on one side; {groups} groups; no prompt holds two items of one group)"
                if groups is not None else "") + f". Layer {d['config']['layer']}, "
             f"{d['reporting']['metadata']['format']} prompts. Reportable axes: {s['n_reportable']} of {s['n_axes']}; "
             + (f"implicitly controllable: {s['n_implicit_controllable']}; explicitly controllable: "
                f"{s['n_explicit_controllable']} (specific: implicit {s['n_implicit_specific']}, explicit "
                f"{s['n_explicit_specific']}). " if s.get("control_verdict") is None else
                f"control: {s['control_verdict']} (label-only shifts with Holm p < alpha: implicit "
                f"{s.get('n_implicit_shifted')}, explicit {s.get('n_explicit_shifted')}). ")
             + f"{s['test']}\n\nN on the learning curves is the upper edge of a bin: "
             "a point at N averages the items that had more examples than the previous N and at most N.")
    agree = d["data"]["lr_human_agreement"]
    if agree is not None:
        split = "split at its decision boundary" if paper else "median split"
        prose += f" The LR axis' {split} agrees with the human labels on {agree:.1%} of the pool sentences."
    rows = [{k: v for k, v in r.items()} for r in s["rows"]]
    figs = result.figures()
    features = feature_table({"sae": d["axes"].get("sae")})
    if features:
        sae = d["axes"]["sae"]
        prose += (f"\n\nSAE feature axes: {len(features)} features of the SAE at {sae['path']} (site {sae['site']}, "
                  f"{sae['architecture']}, {sae['d_sae']} features), chosen by '{sae['selection']}' on the fit split only "
                  f"({'; '.join(f'{k}: {v}' for k, v in sae['rules'].items()) or 'indices given'}). Axis F<i> is feature "
                  f"i's {sae['direction']}; {sae['projection']}. They share the other axes' reporting and control tests "
                  "and Holm families.")
    cards = d.get("cards")
    if cards:
        by_feature = {c.feature: c for c in result.cards}
        features = [{**r, **card_glance(by_feature.get(r["feature"]))} for r in features]
        prose += (f" Each feature axis has a card (top-activating contexts, logit effect through the unembedding, "
                  f"histogram of its nonzero activations) read from {cards['texts']}.")
    return [("Summary", prose), ("Axes", rows), *([("SAE feature axes", features)] if features else []),
            *figs[:2], figs[2], figs[3], figs[4],
            ("Implicit control effects", [_brief(e) for e in d["implicit"]["effects"]]),
            ("Explicit control effects", [_brief(e) for e in d["explicit"]["effects"]] if d.get("explicit") else []),
            *[(f"Feature card: F{c.feature} (active on {c.n_active} of {c.n_tokens} fit-split tokens)", c.figure())
              for c in result.cards],
            ("Example reporting prompt", d["reporting"]["example_prompt"][:3000]),
            ("Example control prompt", d["implicit"]["example_prompt"][:3000])]

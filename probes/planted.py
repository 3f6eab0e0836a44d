"""A planted reporter: a known, tunable ability to report one axis, for sensitivity checks.

During the reporting task, at every answer position (the position whose next token is an item's
label), the final-norm state is moved along the direction that raises label 1's logit against
label 0's, by `strength x z`, where z is the item's standardised projection on the chosen axis
(projection minus the axis' label threshold, over the fit split's SD of projections). The label
difference (logit of label 1 minus logit of label 0) therefore changes by exactly `strength x z`
(before any final-logit softcap), toward the label the axis gives the sentence. It reads no
in-context examples: it is a model that knows the axis, of known strength, which the pipeline
must find. Made through `edits=` of `metalens.next_token_logprobs`, the pass every reading uses.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from metalens.sites import FINAL_NORM

UNIT = ("logits of label difference (label 1 minus label 0, before any final-logit softcap) per SD of the axis "
        "projection")


def standardised_scores(axes, fit_acts, acts, axis: str) -> np.ndarray:
    """[n]: each activation's projection on `axis` minus the axis' label threshold, over the fit split's
    SD of projections (the paper rule's own scale when the axes carry one); > 0 where the label is 1."""
    i = axes.index(axis)
    if axes.scales is not None:
        sd = float(axes.scales[i])
    else:
        sd = float(axes.project(fit_acts)[:, i].std())
    if not np.isfinite(sd) or sd <= 0:
        raise ValueError(f"Axis {axis} has no spread on the fit split (SD {sd}): plant another axis.")
    return ((axes.project(acts)[:, i] - axes.thresholds[i]) / sd).numpy().astype(np.float64)


@dataclass
class PlantedReporter:
    """Adds `strength x scores[item]` logits of label difference at each item's answer position.

    scores: [n_texts] standardised projections of the texts given to `measure_reporting`
    (`standardised_scores`). Strength 0 adds exact zeros: every output stays bit-identical.
    """

    axis: str
    strength: float
    scores: np.ndarray = field(repr=False)

    def describe(self) -> dict:
        """What was planted, for results metadata."""
        return {"axis": self.axis, "strength": float(self.strength), "unit": UNIT, "site": FINAL_NORM}

    def edits(self, model, items, prompts, label_ids) -> dict:
        """`{FINAL_NORM: fn}` for one draw's prompts, which all show `items` (indices into the texts) in
        one order, so every prompt has its answers at the same positions."""
        first = prompts[0].label_pos
        if any(list(r.label_pos) != list(first) for r in prompts):
            raise ValueError("The prompts of one draw place their labels at different positions; a planted "
                             "reporter needs label words that tokenise to the same length.")
        weight = model.hf.get_output_embeddings().weight  # [vocab, d_model]
        diff = (weight[label_ids[1]] - weight[label_ids[0]]).float()  # [d_model]
        # Along diff / |diff|^2, a step of c changes (logit 1 - logit 0) by exactly c.
        unit_push = diff / diff.dot(diff)
        offsets = torch.as_tensor(self.strength * self.scores[np.asarray(items)], dtype=torch.float32)  # [n_items]
        answer_pos = torch.as_tensor([p - 1 for p in first])  # position p - 1 predicts the label at p

        def push(hidden):  # [batch, pos, d_model]
            out = hidden.clone()
            delta = (offsets[:, None] * unit_push[None].cpu()).to(hidden.device, hidden.dtype)  # [n_items, d_model]
            out[:, answer_pos.to(hidden.device)] += delta
            return out

        return {FINAL_NORM: push}

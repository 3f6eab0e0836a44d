"""Planted abilities of known, tunable size, for sensitivity checks: a reporter and a controller of one axis.

Reporter (`PlantedReporter`). During the reporting task, at every answer position (the position whose next token is an item's
label), the final-norm state is moved along the direction that raises label 1's logit against
label 0's, by `strength x z`, where z is the item's standardised projection on the chosen axis
(projection minus the axis' label threshold, over the fit split's SD of projections). The label
difference (logit of label 1 minus logit of label 0) therefore changes by exactly `strength x z`
(before any final-logit softcap), toward the label the axis gives the sentence. It reads no
in-context examples: it is a model that knows the axis, of known strength, which the pipeline
must find. Made through `edits=` of `metalens.next_token_logprobs`, the pass every reading uses.

Controller (`PlantedController`). In the 2 x 2 flip control design (`flip_control`), in the trials
whose target is the chosen axis, every token of the measured reply is moved at the neurofeedback
layer's residual stream by `+strength x SD x u` where the design asks for the axis' high side (imposed
label 1 with the true labels shown, 0 with the flipped ones) and by `-strength x SD x u` where it asks
for the low side (u the axis' unit direction, SD the fit split's SD of its projections). The measured
mean therefore moves by exactly +-strength SDs along the axis, the 2 x 2 effect (high - low) by
2 x strength SDs, and the label token's own contrast (imposed 1 vs 0, whatever the labels mean) not
at all: it is control the flip design keeps. It acts only where the pipeline reads the reply (the
reading pass of `control.span_means`); under explicit control the words the model writes are the
unplanted model's. Trials of other targets are left alone: the planted ability is control of one axis
when asked about it, so any other axis called controllable is a call nothing planted.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from metalens.sites import FINAL_NORM, resid_post

UNIT = ("logits of label difference (label 1 minus label 0, before any final-logit softcap) per SD of the axis "
        "projection")


CONTROL_UNIT = ("SDs of the axis projection (the fit split's) added to every measured token of the reply, + where the "
                "2x2 design asks for the axis' high side, - where it asks for the low side (2x2 effect = 2 x strength SDs)")


def axis_sd(axes, fit_acts, axis: str) -> float:
    """The fit split's SD of projections on `axis` (the paper rule's own scale when the axes carry one)."""
    i = axes.index(axis)
    sd = float(axes.scales[i]) if axes.scales is not None else float(axes.project(fit_acts)[:, i].std())
    if not np.isfinite(sd) or sd <= 0:
        raise ValueError(f"Axis {axis} has no spread on the fit split (SD {sd}): plant another axis.")
    return sd


def standardised_scores(axes, fit_acts, acts, axis: str) -> np.ndarray:
    """[n]: each activation's projection on `axis` minus the axis' label threshold, over the fit split's
    SD of projections (`axis_sd`); > 0 where the label is 1."""
    i = axes.index(axis)
    sd = axis_sd(axes, fit_acts, axis)
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


@dataclass
class PlantedController:
    """Moves the measured reply along `axis` by +-`strength` SDs (`sd`, projection units) at block
    `layer`, + where the 2 x 2 design asks for the axis' high side, in the trials whose target is
    `axis`. `direction` [d_model] is the axis' unit direction. Strength 0 adds exact zeros: every
    output stays bit-identical."""

    axis: str
    strength: float
    layer: int
    sd: float
    direction: torch.Tensor = field(repr=False)

    @classmethod
    def for_axes(cls, axes, fit_acts, axis: str, strength: float, layer: int) -> "PlantedController":
        """A controller of `axis` from fitted `axes` (their unit direction, the fit split's SD)."""
        return cls(axis, float(strength), layer, axis_sd(axes, fit_acts, axis), axes.directions[axes.index(axis)].float())

    def describe(self) -> dict:
        """What was planted, for results metadata."""
        return {"axis": self.axis, "strength": float(self.strength), "unit": CONTROL_UNIT, "site": resid_post(self.layer),
                "sd": self.sd, "acts_in": "trials whose target is the planted axis; the reading pass only"}

    def edits(self, target: str, high) -> Callable | None:
        """For the measured prompts of one target (`high` [n_prompts] bool: the design asks for the axis'
        high side, i.e. imposed label XOR shown labels flipped), the per-batch edits `control.span_means`
        takes: `(prompt indices [batch], span weights [batch, pos]) -> {site: fn}`; None for another target."""
        if target != self.axis:
            return None
        sign = torch.where(torch.as_tensor(np.asarray(high, dtype=bool)), 1.0, -1.0)  # [n_prompts]
        step = self.strength * self.sd * self.direction  # [d_model]; a unit direction: the projection moves by strength x SD
        site = resid_post(self.layer)

        def for_batch(prompt_idx, span):  # span: [batch, pos], > 0 on the measured tokens
            delta = sign[torch.as_tensor(prompt_idx)][:, None, None] * (span > 0).float()[..., None] * step  # [batch, pos, d_model]

            def push(hidden):  # [batch, pos, d_model]
                return hidden + delta.to(hidden.device, hidden.dtype)

            return {site: push}

        return for_batch

"""A planted steerable behaviour: a model that represents "the answer matches the behaviour" along a known
direction at one block and acts on it with one knob, for steer-ab's sensitivity check.

The plant knows each item's matching letter (it is built from the items) and recognises the rows the
pipeline runs by their token ids. Two hooks, through `metalens.hooks`, nothing in the weights:

(a) code, at `resid_post(layer)`: a question answered with a letter (a CAA pair text) gets +c/2 u at
    that letter's position when the letter is the item's matching one, -c/2 u when it is the other,
    so CAA's mean difference (matching minus other) finds u. c = `CODE` x the block's mean residual norm.
(b) readout, at the final norm: where the answer letter is read (after the last token both answers
    share), the matching letter's logit minus the other's moves by `strength x <h, u> / norm`, h the
    block's output there (steering included), norm its mean residual norm. Steering along u by s
    residual norms therefore moves the logit difference by `strength x s` (plus whatever u does in the
    unplanted model). steer-ab's own residual unit is measured on its training texts with the code
    added, a few % longer than `norm`, so its slopes come out a few % above the planted strength.

Strength 0 plants nothing: both hooks are off and every output is the unplanted model's.
The seeded direction u is drawn one of two ways (`direction_from`): "random", a uniform random unit vector (on
gemma-3-270m a step of 0.05 residual norms along it costs 2.7-4.1 nats/token on neutral text, measured by
results/sensitivity/steer-ab/direction_cost.py: the residual norm
sits in a few massive dimensions, so no strength stays within steer-ab's cost bound), or "activations", a
random combination of the block's centred activations on the CAA texts (a direction drawn from their own
covariance, which the model tolerates as it tolerates its own variation).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np
import torch

import metalens
from metalens.sites import FINAL_NORM, resid_post, resid_pre
from metalens.steering.ab.items import LETTERS, ABItem, answer_prefix, caa_pairs, swap_choices

UNIT = ("logits of matching-minus-other letter difference (before any final-logit softcap) per unit of steering "
        "strength (residual-norm units) along the planted direction")
CODE = 0.5  # hook (a)'s code length c, in the block's mean residual norms: enough for CAA to find u
DIRECTIONS = ("random", "activations")  # how u is drawn (see the module docstring)


@dataclass
class PlantedSteerable:
    """The plant for `items` at block `layer` with knob `strength` (unit: `UNIT`), direction seed `seed` and
    direction kind `direction_from` (`DIRECTIONS`).

    `install(model)` (a context manager) measures the block's mean residual norm on the items' CAA texts
    (unplanted) and hooks the model inside the block; `direction` and `norm` are set there.
    """

    items: list[ABItem]
    layer: int
    strength: float
    seed: int = 0
    chat: bool | None = None
    direction_from: str = "random"
    direction: torch.Tensor | None = field(default=None, repr=False)  # [d_model], unit length
    norm: float | None = None  # the block's mean residual norm (resid_post, at the CAA texts' letter)

    def describe(self) -> dict:
        """What was planted, for results."""
        return {"layer": self.layer, "strength": float(self.strength), "seed": self.seed, "unit": UNIT,
                "direction": self.direction_from, "code_norms": CODE, "residual_norm": self.norm,
                "sites": [resid_post(self.layer), FINAL_NORM]}

    def tables(self, model) -> tuple[dict, dict]:
        """({pair ids: +1 matching / -1 other}, {prefix ids: (matching token, other token)}) over the items
        and their choice-swapped copies (steer-ab balances its training items by swapping choices)."""
        pairs, prefixes = {}, {}
        every = list(self.items) + [s for s in map(swap_choices, self.items) if s is not None]
        for item in every:
            prefix = answer_prefix(model, item.question, self.chat)
            ids = {x: model.tokenizer(prefix + x)["input_ids"] for x in LETTERS}
            a, b = ids["A"], ids["B"]
            k = next((j for j in range(min(len(a), len(b))) if a[j] != b[j]), min(len(a), len(b)))
            # as steer-ab reads them (`letter_logprobs`): one pass over the shared tokens, the letters'
            # tokens read after the last of them (a tokenizer may merge "(" and the letter into one token)
            if k == 0 or not len(a) == len(b) == k + 1:
                raise ValueError("The two answers do not differ in one last token: this model cannot carry the "
                                 "planted steerable behaviour.")
            pairs[tuple(ids[item.matching])] = 1.0
            pairs[tuple(ids[item.other])] = -1.0
            prefixes[tuple(a[:k])] = (ids[item.matching][k], ids[item.other][k])
        return pairs, prefixes

    def measure(self, model) -> None:
        """Set `direction` (seeded unit vector) and `norm` (mean |resid_post| at the CAA texts' letters)."""
        if not 0 <= self.layer < model.n_layers - 1:
            raise ValueError(f"The plant needs a block before the last (0..{model.n_layers - 2}), not {self.layer}: "
                             "its readout reads the block's output where the next block starts.")
        if self.direction_from not in DIRECTIONS:
            raise ValueError(f"direction_from must be one of {DIRECTIONS}, not {self.direction_from!r}.")
        positive, negative = caa_pairs(model, self.items, self.chat)
        acts = metalens.capture(model, positive + negative, [resid_post(self.layer)], positions="last",
                                progress=False, dtype=torch.float32)[resid_post(self.layer)]  # [n_texts, d_model]
        g = torch.Generator().manual_seed(int(self.seed))
        if self.direction_from == "random":
            u = torch.randn(model.d_model, generator=g)
        else:  # a random combination of the centred activations: a draw from their covariance
            u = torch.randn(acts.shape[0], generator=g) @ (acts - acts.mean(0))
        self.direction = u / u.norm()
        self.norm = float(acts.norm(dim=-1).mean())
        if not np.isfinite(self.norm) or self.norm <= 0:
            raise ValueError(f"Block {self.layer}'s residual norm is {self.norm}: plant at another block.")

    @contextlib.contextmanager
    def install(self, model):
        """Within the block, every forward pass of `model` carries the plant (nothing at strength 0)."""
        self.measure(model)
        if self.strength == 0:
            yield self
            return
        pairs, prefixes = self.tables(model)
        u = self.direction.to(model.device)
        weight = model.hf.get_output_embeddings().weight  # [vocab, d_model]
        rows: dict = {}  # the current pass: pair rows [(row, pos, sign)], read rows [(row, pos, m, o)]

        def see_ids(module, args, kwargs):  # why: hooks see activations only; the rows are known by their ids
            ids, mask = kwargs.get("input_ids"), kwargs.get("attention_mask")
            rows.clear()
            rows.update(pairs=[], reads=[], h=None)
            if ids is None or ids.dim() != 2:
                return None
            rows["batch"] = ids.shape[0]
            lengths = mask.sum(1).tolist() if mask is not None else [ids.shape[1]] * ids.shape[0]
            for r, n in enumerate(lengths):
                key = tuple(ids[r, :int(n)].tolist())  # right padding: the row's tokens come first
                if key in pairs:
                    rows["pairs"].append((r, int(n) - 1, pairs[key]))
                elif key in prefixes:
                    rows["reads"].append((r, int(n) - 1, *prefixes[key]))
            return None

        code = CODE * self.norm * u  # [d_model]

        def add_code(hidden):  # [batch, pos, d_model]
            if not rows.get("pairs") or hidden.shape[0] != rows["batch"]:
                return None
            out = hidden.clone()
            for r, p, sign in rows["pairs"]:
                out[r, p] += (0.5 * sign * code).to(out.dtype)
            return out

        def read_block(hidden):  # the block's output, steering included (block L's hooks have all run)
            if rows.get("reads") and hidden.shape[0] == rows["batch"]:
                rows["h"] = torch.stack([hidden[r, p].float() for r, p, _, _ in rows["reads"]])  # [n_reads, d_model]
            return None

        def push(hidden):  # final-norm output [batch, pos, d_model]
            if not rows.get("reads") or rows.get("h") is None:
                return None
            out = hidden.clone()
            shift = self.strength * (rows["h"] @ u.float()) / self.norm  # [n_reads]
            for k, (r, p, m, o) in enumerate(rows["reads"]):
                diff = (weight[m] - weight[o]).float()
                # along diff / |diff|^2 a step of x moves (logit m - logit o) by exactly x
                out[r, p] += (shift[k] * diff / diff.dot(diff)).to(out.device, out.dtype)
            return out

        handle = model.hf.register_forward_pre_hook(see_ids, with_kwargs=True)
        try:
            with metalens.hooks(model, {resid_post(self.layer): add_code, resid_pre(self.layer + 1): read_block,
                                        FINAL_NORM: push}):
                yield self
        finally:
            handle.remove()

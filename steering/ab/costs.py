"""What steering costs off the behaviour: neutral-text loss per strength, and the strength range it allows.

A strength whose neutral-text loss rises more than a bound (nats/token) breaks the model rather than
steering it, so a slope over it measures damage. `strength_range` keeps the widest range around 0
whose every grid strength stays under the bound, judged on a validation share of the neutral texts.
"""
from __future__ import annotations

import numpy as np
import torch

import metalens
from metalens.sites import FINAL_NORM

DEFAULT_COST_BOUND = 0.5  # nats/token of neutral-text loss a strength may add and still count as steering


@torch.inference_mode()
def neutral_loss(model, texts: list[str], edits=None, batch_size: int = 8, chunk: int = 256) -> np.ndarray:
    """[n_texts]: mean next-token loss (nats) of each text with `edits` active (BOS not predicted)."""
    out = np.full(len(texts), np.nan)
    for start in range(0, len(texts), batch_size):
        batch = model.tokenize(texts[start:start + batch_size])
        ids, mask = batch["input_ids"], batch["attention_mask"]  # [batch, pos], right-padded
        hidden = metalens.run_with_cache(model, ids, mask, sites=[FINAL_NORM], edits=edits)[FINAL_NORM]
        rows, cols = torch.nonzero(mask[:, 1:], as_tuple=True)  # each target position, after the first token
        nll = torch.empty(len(rows))
        for i in range(0, len(rows), chunk):  # logits for a slice of positions at a time: the vocabulary is wide
            r, c = rows[i:i + chunk], cols[i:i + chunk]
            logp = model.final_logits(hidden[r, c]).float().log_softmax(-1)  # [chunk, vocab]
            nll[i:i + chunk] = -logp[torch.arange(len(r)), ids[r, c + 1]].cpu()
        for row in range(ids.shape[0]):
            keep = rows.cpu() == row
            out[start + row] = nll[keep].mean().item() if keep.any() else np.nan
    return out


def split_neutral(texts: list[str]) -> tuple[list[str], list[str]]:
    """(validation, held-out): every other neutral text, so the range is chosen on texts the reported costs skip."""
    if len(texts) < 2:
        raise ValueError(f"Need at least 2 neutral texts (one to choose the strength range, one to report its cost); "
                         f"got {len(texts)}: pass more lines with --neutral.")
    return texts[0::2], texts[1::2]


def loss_changes(model, vector, layers, strengths, texts, batch_size: int = 8, bar=None) -> dict[int, dict[float, float]]:
    """{layer: {strength: mean paired change of neutral loss (nats/token) against no steering}}; a strength
    whose loss is NaN everywhere (the model broke) gets +inf. The unsteered loss is computed once."""
    base = neutral_loss(model, texts, None, batch_size)
    out = {}
    for layer in layers:
        single = vector.restricted([layer])
        out[layer] = {0.0: 0.0}
        for s in strengths:
            if s == 0.0:
                continue
            diff = neutral_loss(model, texts, single.edits(model, s), batch_size) - base
            out[layer][s] = float(np.nanmean(diff)) if np.isfinite(diff).any() else float("inf")
            if bar is not None:
                bar.update()
    return out


def strength_range(costs: dict[float, float], bound: float = DEFAULT_COST_BOUND) -> tuple[float, float]:
    """(low, high): the widest range around 0 in which every grid strength's cost is at most `bound`
    (walking out from 0 on each side and stopping at the first strength over it); (0, 0) when no
    strength next to 0 passes."""
    if not bound > 0:
        raise ValueError(f"The cost bound must be a positive number of nats/token, not {bound!r}.")
    ends = []
    for side in (sorted((s for s in costs if s < 0), reverse=True), sorted(s for s in costs if s > 0)):
        end = 0.0
        for s in side:
            if not costs[s] <= bound:  # NaN and inf fail too
                break
            end = s
        ends.append(end)
    return ends[0], ends[1]


def range_record(costs: dict[float, float], bound: float, n_texts: int) -> dict:
    """What results.json says about one layer's range: its ends, the bound, where it was chosen, each cost."""
    low, high = strength_range(costs, bound)
    return {"low": low, "high": high, "cost_bound_nats": bound, "chosen_on": "validation",
            "cost_on": f"{n_texts} validation neutral texts (every other line; the rest report the costs)",
            "cost_per_strength": {f"{s:g}": (c if np.isfinite(c) else None) for s, c in sorted(costs.items())},
            "steerable_range": high > low}

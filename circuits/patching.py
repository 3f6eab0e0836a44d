"""Exact per-head activation patching at `blocks.L.attn.hook_z` (the ground truth attribution approximates)."""
from __future__ import annotations

import torch
from torch import Tensor

from metalens.circuits.metrics import TaskBatch, last_logits, metric_value, prepare, task_forward
from metalens.sites import attn_z


def z_run(model, batch: TaskBatch, ids: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Last-position logits `[batch, vocab]` and every layer's z `[batch, pos, head, d_head]` for `ids`."""
    keep = [attn_z(layer) for layer in range(model.n_layers)]
    logits, cache = task_forward(model, batch, ids, keep=keep)
    return logits, [cache[site] for site in keep]


def patch_heads(model, batch: TaskBatch, source_z: list[Tensor], heads_by_layer: dict[int, list[int]]) -> Tensor:
    """Last-position logits of the clean run with the listed heads' z (all positions) taken from `source_z`."""
    def patch(layer, hs):
        def fn(z):  # [batch, pos, head, d_head]
            z = z.clone()
            z[:, :, hs] = source_z[layer][:, :, hs].to(z.dtype)
            return z
        return fn

    edits = {attn_z(layer): patch(layer, hs) for layer, hs in heads_by_layer.items() if hs}
    return last_logits(model, batch, edits=edits)


@torch.no_grad()
def patch_heads_exact(model, task, heads: list[tuple[int, int]] | None = None) -> Tensor:
    """[n_layers, n_heads] change of the task metric when one head's z (all positions) is taken from
    the corrupted run into the clean run; NaN for heads not in `heads` (default: all)."""
    batch = prepare(model, task)
    clean_logits = last_logits(model, batch)
    _, corr_z = z_run(model, batch, batch.corrupted_ids)
    base = metric_value(batch, clean_logits, clean_logits)
    scores = torch.full((model.n_layers, model.n_heads), float("nan"))
    heads = heads if heads is not None else [(l, h) for l in range(model.n_layers) for h in range(model.n_heads)]
    for layer, head in heads:
        logits = patch_heads(model, batch, corr_z, {layer: [head]})
        scores[layer, head] = (metric_value(batch, logits, clean_logits) - base).item()
    return scores

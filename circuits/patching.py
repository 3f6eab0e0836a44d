"""Exact per-head activation patching at `blocks.L.attn.hook_z` (the ground truth attribution approximates)."""
from __future__ import annotations

import torch
from torch import Tensor

import metalens
from metalens.circuits.metrics import TaskBatch, last_logits, metric_value, prepare


def z_site(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_z"


@torch.no_grad()
def run_with_z(model, batch: TaskBatch, ids: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Last-position logits and every layer's z ([batch, pos, head, d_head]) for `ids`."""
    store: list[Tensor] = [None] * model.n_layers

    def keep(layer):
        def fn(z):
            store[layer] = z.detach().clone()
        return fn

    with metalens.hooks(model, {z_site(l): keep(l) for l in range(model.n_layers)}):
        logits = last_logits(model, batch, ids)
    return logits, store


@torch.no_grad()
def patch_heads_exact(model, task, heads: list[tuple[int, int]] | None = None) -> Tensor:
    """[n_layers, n_heads] change of the task metric when one head's z (all positions) is taken from
    the corrupted run into the clean run; NaN for heads not in `heads` (default: all)."""
    batch = prepare(model, task)
    clean_logits, _ = run_with_z(model, batch, batch.clean_ids)
    _, corr_z = run_with_z(model, batch, batch.corrupted_ids)
    base = metric_value(batch, clean_logits, clean_logits)
    scores = torch.full((model.n_layers, model.n_heads), float("nan"))
    heads = heads if heads is not None else [(l, h) for l in range(model.n_layers) for h in range(model.n_heads)]
    for layer, head in heads:
        def patch(z, layer=layer, head=head):
            z = z.clone()
            z[:, :, head] = corr_z[layer][:, :, head]
            return z

        with metalens.hooks(model, {z_site(layer): patch}):
            logits = last_logits(model, batch)
        scores[layer, head] = (metric_value(batch, logits, clean_logits) - base).item()
    return scores

"""Per-head attribution patching (gradient x activation difference at `attn.hook_z`) and EAP-IG.

Attribution patching (Nanda 2023; Syed et al. 2023, "Attribution Patching Outperforms Automated
Circuit Discovery") estimates every head's patching effect from one clean forward/backward pass:
effect(h) ~ sum over positions and d_head of (z_corrupted - z_clean) * dMetric/dz at the clean run.
The integrated-gradients variant (Hanna et al. 2024, "Have Faith in Faithfulness", EAP-IG)
averages the gradient over k inputs interpolated between corrupted and clean embeddings, which
fixes the zero gradient of metrics at an optimum (KL is 0 and flat at the clean run).
"""
from __future__ import annotations

import torch
from torch import Tensor

from metalens.circuits.metrics import TaskBatch, embeddings, metric_value, prepare, task_forward
from metalens.circuits.patching import z_run
from metalens.sites import attn_z


def z_gradients(model, batch: TaskBatch, embeds: Tensor, reference: Tensor) -> list[Tensor]:
    """d(mean metric)/dz for every layer, [batch, pos, head, d_head] each, at inputs `embeds`."""
    keep = [attn_z(layer) for layer in range(model.n_layers)]
    embeds = embeds.detach().requires_grad_(True)  # gradients reach z even when the weights are frozen
    with torch.enable_grad():
        logits, cache = task_forward(model, batch, embeds=embeds, keep=keep, grad=True)
        value = metric_value(batch, logits, reference)
        grads = torch.autograd.grad(value, [cache[site] for site in keep])
    return [g.detach() for g in grads]


def attribute_heads(model, task, method: str = "attribution", steps: int = 5) -> Tensor:
    """[n_layers, n_heads] estimated metric change when each head's z is patched from corrupted.

    method: 'attribution' (gradient at the clean run) or 'ig' (EAP-IG, `steps` interpolation
    points between corrupted and clean inputs, midpoint rule).
    """
    if method not in ("attribution", "ig"):
        raise ValueError(f"Unknown method '{method}': use 'attribution' or 'ig'.")
    batch = prepare(model, task)
    clean_logits, clean_z = z_run(model, batch, batch.clean_ids)
    _, corr_z = z_run(model, batch, batch.corrupted_ids)
    e_clean, e_corr = embeddings(model, batch.clean_ids), embeddings(model, batch.corrupted_ids)
    alphas = [1.0] if method == "attribution" else [(i + 0.5) / steps for i in range(steps)]
    total = [torch.zeros_like(z) for z in clean_z]
    for alpha in alphas:  # alpha = 1 is the clean input, 0 the corrupted one
        grads = z_gradients(model, batch, e_corr + alpha * (e_clean - e_corr), clean_logits)
        for acc, g in zip(total, grads):
            acc += g / len(alphas)
    keep = batch.mask[:, :, None, None].to(total[0].dtype)  # padding positions carry no signal
    scores = [((zc - z) * g * keep).sum(dim=(0, 1, 3)) for zc, z, g in zip(corr_z, clean_z, total)]
    return torch.stack(scores).float().cpu()  # sum over batch of grads of a mean = mean effect

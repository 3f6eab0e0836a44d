"""`ablate` and `scale_heads`: context managers that edit chosen heads' z during any forward pass."""
from __future__ import annotations

import contextlib

import torch
from torch import Tensor

import metalens
from metalens.sites import attn_z

Heads = list[tuple[int, int]]
HOW = ("zero", "mean", "resample")


def _by_layer(model, heads: Heads) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for layer, head in heads:
        model.check_layer(int(layer))
        if not 0 <= head < model.n_heads:
            raise ValueError(f"Head {head} is out of range: {model.name} has heads 0-{model.n_heads - 1} per layer.")
        out.setdefault(int(layer), []).append(int(head))
    return out


def head_activations(model, texts: list[str], layers: list[int]) -> dict[int, Tensor]:
    """{layer: [n_tokens, head, d_head]} z at every non-padding token of `texts`."""
    batch = model.tokenize(texts)
    keep = batch["attention_mask"].bool()  # [batch, pos]
    cache = metalens.run_with_cache(model, batch["input_ids"], batch["attention_mask"],
                                    sites=[attn_z(layer) for layer in layers])
    return {layer: cache[attn_z(layer)][keep] for layer in layers}


@contextlib.contextmanager
def ablate(model, heads: Heads, how: str = "zero", reference: list[str] | None = None, seed: int = 0):
    """Inside the block, the listed (layer, head)s are knocked out at every position.

    zero: z = 0. mean: z = the head's mean z over the tokens of `reference` texts.
    resample: each position gets the head's z at a random token of `reference` (Chan et al.
    2022, causal scrubbing's resampling ablation; position-agnostic here so that it also works
    token by token during generation).
    """
    if how not in HOW:
        raise ValueError(f"Unknown ablation '{how}': use one of {HOW}.")
    layers = _by_layer(model, heads)
    if how != "zero" and not reference:
        raise ValueError(f"how='{how}' needs `reference` texts to take head activations from.")
    pool = head_activations(model, reference, list(layers)) if how != "zero" else {}
    gen = torch.Generator().manual_seed(seed)

    def edit(layer, hs):
        def fn(z):
            z = z.clone()
            if how == "zero":
                z[:, :, hs] = 0
            elif how == "mean":
                z[:, :, hs] = pool[layer][:, hs].mean(0).to(z.dtype)
            else:
                pick = torch.randint(len(pool[layer]), z.shape[:2], generator=gen).to(z.device)
                z[:, :, hs] = pool[layer][pick][:, :, hs].to(z.dtype)
            return z
        return fn

    if not layers:  # nothing to ablate (e.g. the "none" baseline)
        yield
        return
    with metalens.hooks(model, {attn_z(l): edit(l, hs) for l, hs in layers.items()}):
        yield


@contextlib.contextmanager
def scale_heads(model, heads: Heads, factor: float):
    """Inside the block, the listed heads' z is multiplied by `factor` (e.g. 1.3 strengthens, 0.5 weakens)."""
    layers = _by_layer(model, heads)

    def edit(hs):
        def fn(z):
            z = z.clone()
            z[:, :, hs] = z[:, :, hs] * factor
            return z
        return fn

    if not layers:
        yield
        return
    with metalens.hooks(model, {attn_z(l): edit(hs) for l, hs in layers.items()}):
        yield

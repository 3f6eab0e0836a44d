"""`run_with_cache`: the one forward pass with hooks that every area uses.

In the spirit of TransformerLens's `run_with_cache(names_filter=..., stop_at_layer=...)`: run the
model on token ids (or embeddings), keep the tensors at the requested sites, optionally edit
others on the way, and stop right after the deepest kept site unless the logits are wanted.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from torch import Tensor

from metalens.hooks import HookFn, StopForward, hooks
from metalens.sites import resolve_sites


@dataclass
class Cache:
    """Tensors kept by one forward pass (`cache[site]`), and the logits when it ran to the end."""

    acts: dict[str, Tensor] = field(default_factory=dict)
    logits: Tensor | None = None  # [batch, pos, vocab], None when the pass stopped early

    def __getitem__(self, site: str) -> Tensor:
        if site not in self.acts:
            raise KeyError(f"Site '{site}' was not kept in this pass; kept: {sorted(self.acts)}.")
        return self.acts[site]

    def __contains__(self, site: str) -> bool:
        return site in self.acts

    def __len__(self) -> int:
        return len(self.acts)


def run_with_cache(
    model,
    input_ids: Tensor | None = None,
    attention_mask: Tensor | None = None,
    *,
    sites=(),
    inputs_embeds: Tensor | None = None,
    edits: dict[str, HookFn] | None = None,
    logits: bool = False,
    grad: bool = False,
) -> Cache:
    """One forward pass keeping the activations at `sites` (views as in `metalens.hooks`).

    edits: `{site: fn}` applied during the pass (a returned tensor replaces the activation); a site
        both edited and kept is kept after its edit.
    logits: run to the end and return the logits; otherwise the pass stops right after the deepest
        kept site (no later block, no unembedding), and at least one site must be kept.
    grad: build the autograd graph. Each kept tensor is then a fresh node that the rest of the pass
        consumes, so `torch.autograd.grad(metric, cache[site])` gives the metric's gradient there.
        Without it the pass runs under `torch.inference_mode` (cheaper per op than `no_grad`) and kept
        tensors, and the logits, are ordinary detached copies: safe to edit in place or to use in autograd.
    """
    names = [sites] if isinstance(sites, str) else list(sites or ())
    edits = dict(edits or {})
    if not names and not logits:
        raise ValueError("Nothing to return: keep at least one site or pass logits=True.")
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("Pass exactly one of input_ids and inputs_embeds.")
    wanted = list(dict.fromkeys([*names, *edits]))
    site_of = {s.name: s for s in resolve_sites(model, wanted)} if wanted else {}  # resolved once per pass
    stop = not logits
    if stop and edits:
        deepest = max((site_of[n] for n in names), key=lambda s: s.order)
        late = [n for n in edits if site_of[n].order > deepest.order]
        if late:
            raise ValueError(f"Edits at {late} come after the deepest kept site '{deepest.name}' and would "
                             "never run: keep a later site or pass logits=True.")
    kept: dict[str, Tensor] = {}

    def hook_for(name: str) -> HookFn:
        edit = edits.get(name)
        keep = name in names

        def fn(act: Tensor):
            new = edit(act) if edit is not None else None
            if not keep:
                return new
            value = act if new is None else new
            if grad:
                # A fresh node that flows on, so it receives the gradient; a leaf when nothing upstream
                # requires grad (frozen weights, integer ids).
                kept[name] = value.clone() if value.requires_grad else value.detach().clone().requires_grad_()
                return kept[name]
            with torch.inference_mode(False):  # an ordinary tensor, not an inference tensor
                kept[name] = value.clone()
            return new

        return fn

    inputs = {"input_ids": input_ids} if input_ids is not None else {"inputs_embeds": inputs_embeds}
    out = None
    context = torch.enable_grad() if grad else torch.inference_mode()
    fns = {n: hook_for(n) for n in wanted}
    with context, (hooks(model, fns, stop_after=stop, resolved=[site_of[n] for n in fns]) if fns
                   else contextlib.nullcontext()):
        with contextlib.suppress(StopForward):
            out = model.hf(**inputs, attention_mask=attention_mask, use_cache=False)
    out_logits = out.logits if out is not None and logits else None
    if out_logits is not None and out_logits.is_inference():
        with torch.inference_mode(False):  # an ordinary tensor, as the kept ones
            out_logits = out_logits.clone()
    return Cache({n: kept[n] for n in names}, out_logits)

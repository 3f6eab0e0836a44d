"""`hooks`: the one mechanism that reads or edits activations at named sites."""
from __future__ import annotations

import contextlib
from typing import Callable

import einops
from torch import Tensor

from metalens.sites import Site, resolve_sites

HookFn = Callable[[Tensor], "Tensor | None"]


class StopForward(Exception):
    """Raised by a hook to end a forward pass early once everything needed is computed."""


def _to_view(site: Site, act: Tensor) -> Tensor:
    if site.heads is None:
        return act
    return einops.rearrange(act, "b p (h d) -> b p h d", h=site.heads)


def _from_view(site: Site, act: Tensor) -> Tensor:
    if site.heads is None:
        return act
    return einops.rearrange(act, "b p h d -> b p (h d)")


def _pre_hook(site: Site, fn: HookFn):
    def hook(module, args, kwargs):
        from_args = len(args) > 0
        act = args[0] if from_args else kwargs["hidden_states"]
        new = fn(_to_view(site, act))
        if new is None:
            return None
        new = _from_view(site, new)
        if from_args:
            return (new, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": new}

    return hook


def _out_hook(site: Site, fn: HookFn):
    def hook(module, args, output):
        is_tuple = isinstance(output, tuple)
        act = output[site.output_index] if is_tuple else output
        if act is None:
            raise RuntimeError(
                f"Site '{site.name}' produced no tensor: attention patterns need eager attention. "
                "Load the model with metalens.load_model(..., attn_implementation='eager')."
            )
        new = fn(_to_view(site, act))
        if new is None:
            return None
        new = _from_view(site, new)
        if not is_tuple:
            return new
        return (*output[: site.output_index], new, *output[site.output_index + 1 :])

    return hook


def attach(site: Site, fn: HookFn):
    """Register `fn` at a resolved `site` as `hooks` does; returns the handle (`.remove()` detaches it).

    For code that must keep its own hooks (e.g. `metalens.fastgen`); everything else uses `hooks`.
    """
    if site.when == "pre":
        return site.module.register_forward_pre_hook(_pre_hook(site, fn), with_kwargs=True)
    return site.module.register_forward_hook(_out_hook(site, fn))


def _raise_stop(module, args, output):
    raise StopForward


@contextlib.contextmanager
def hooks(model, fns: dict[str, HookFn], stop_after: bool = False, resolved: list[Site] | None = None):
    """Run `fns[site](activation)` at each site during forward passes inside the block.

    A hook sees the activation as `[batch, pos, d_model]`, or `[batch, pos, head, d_head]` for
    per-head sites (`attn.hook_z/q/k/v`), or `[batch, head, q_pos, k_pos]` for
    `attn.hook_pattern`; returning a tensor of the same shape replaces it, returning None
    leaves it. With `stop_after=True` the pass raises `StopForward` once the deepest site is
    done (catch it, or use `metalens.capture`). Hooks are removed on exit, even on error.
    `resolved`: the sites of `fns`' keys, in order, when the caller has resolved them already.
    """
    sites = resolve_sites(model, list(fns)) if resolved is None else resolved
    handles = []
    try:
        for site in sites:
            handles.append(attach(site, fns[site.name]))
        if stop_after:
            deepest = max(sites, key=lambda s: s.order)
            handles.append(deepest.stop_module.register_forward_hook(_raise_stop))
        yield
    finally:
        for handle in handles:
            handle.remove()

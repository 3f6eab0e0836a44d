"""The compiled generation path: a static KV cache, a `torch.compile`d decode step, and steering inside it.

`metalens.generate(..., fast=True)` decodes through transformers' own auto-compile (a static cache plus a
`CompileConfig`; CUDA graphs on CUDA). A Python hook cannot change what a compiled graph does once it is
traced: dynamo does not guard on module hooks, so a hook added after the first compile is silently
ignored and one removed keeps running. So steering lives in one tensor per model, `SteerOffsets.live`
`[layer, d_model]`, that a fixed set of hooks (one per block, at `resid_post`) adds in every fast pass;
the graph reads it as an input, and steering writes its values in place: strength, layers and on/off
change without a recompile. When nothing steers, the offsets are zeros (x + 0 is x exactly).

Dynamo keeps compiled graphs per code object and reuses one for any model of the same shape, hooks or
not. transformers compiles `model.__call__`, shared with every hook-less static-cache `generate` in the
process, so for the length of each fast `generate` the fast path hands transformers its own compiled step
(`_decode_step`), which thus only ever runs, and is only ever traced, with the offsets attached.
"""
from __future__ import annotations

import contextlib
import contextvars

import torch
from torch import Tensor
from transformers import CompileConfig, LogitsProcessor

from metalens import sites
from metalens.hooks import attach
from metalens.sites import resolve_sites


def compile_config(device) -> CompileConfig:
    """transformers' compile settings for the decode step: CUDA graphs on CUDA, plain inductor elsewhere."""
    cuda = torch.device(device).type == "cuda"
    config = CompileConfig(mode="reduce-overhead" if cuda else "default")
    if not cuda:  # transformers compiles on its own only on accelerators; elsewhere (CPU tests) when asked
        config._compile_all_devices = True
    return config


class _SwitchToDecode(LogitsProcessor):
    """Copies the generated tokens' offsets into `live` at its first call, i.e. once the prompt's pass is done."""

    def __init__(self, live: Tensor, decode: Tensor):
        self.live, self.decode, self.done = live, decode, False

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        if not self.done:
            self.live.copy_(self.decode)
            self.done = True
        return scores


class SteerOffsets:
    """Additive offsets at every block's output (`blocks.L.hook_resid_post`), read by the compiled graph.

    One per model (`offsets_for`). `prefill` `[layer, d_model]` is what the prompt's pass adds and `decode`
    what each generated token's pass adds; they differ only under prompt=False steering. `live` is what the
    hooks add right now. Hooks are attached to every block (zeros where nothing steers), so the one compiled
    graph serves plain and steered runs at any layers and strengths.
    """

    def __init__(self, model):
        self.live = torch.zeros(model.n_layers, model.d_model, device=model.device, dtype=model.dtype)
        self.prefill = torch.zeros_like(self.live)
        self.decode = torch.zeros_like(self.live)
        self.split = False  # True while some steering skips the prompt (prefill != decode)
        self._sites = resolve_sites(model, [sites.resid_post(layer) for layer in range(model.n_layers)])
        self._fns = [self._adder(layer) for layer in range(model.n_layers)]
        self._handles: list = []
        self._depth = 0
        self._hf = model.hf
        self._steps: dict[tuple, object] = {}  # compiled decode steps by compile settings

    def _adder(self, layer: int):
        live = self.live

        def add(act):  # [batch, pos, d_model] + [d_model]
            return act + live[layer]

        return add

    @contextlib.contextmanager
    def attached(self):
        """Within the block every forward pass adds `live` at each block's output (nestable)."""
        if self._depth == 0:
            self._handles = [attach(site, fn) for site, fn in zip(self._sites, self._fns)]
        self._depth += 1
        try:
            yield self
        finally:
            self._depth -= 1
            if self._depth == 0:
                for handle in self._handles:
                    handle.remove()
                self._handles = []

    @contextlib.contextmanager
    def steering(self, vectors: dict[int, Tensor], prompt: bool = True):
        """Within the block, add `vectors[L]` `[d_model]` at block L: at the prompt's positions too unless
        prompt=False (then from the first generated token on, as `steering.adder(prompt=False)`). Nestable:
        inner blocks add to outer ones; values are restored on exit."""
        saved = self.prefill.clone(), self.decode.clone(), self.split
        try:
            for layer, vec in vectors.items():
                vec = vec.to(self.live.device, self.live.dtype)
                if prompt:
                    self.prefill[layer] += vec
                self.decode[layer] += vec
            self.split = self.split or (not prompt and bool(vectors))
            self.live.copy_(self.prefill)
            with self.attached():
                yield self
        finally:
            self.prefill.copy_(saved[0])
            self.decode.copy_(saved[1])
            self.split = saved[2]
            self.live.copy_(self.prefill)

    @contextlib.contextmanager
    def generating(self, processors: list, config: CompileConfig):
        """For one `generate(..., compile_config=config)` call: offsets attached and at the prompt's values, and
        transformers set to decode with metalens' compiled step; yields the processors to run (with one first
        that switches to the generated tokens' offsets after the prompt's pass, when they differ)."""
        hf, key = self._hf, tuple(sorted(config.to_dict().items(), key=str))
        if key not in self._steps:
            self._steps[key] = torch.compile(_decode_step(hf), **config.to_dict())
        saved = {name: hf.__dict__[name] for name in ("_compiled_call", "_last_compile_config") if name in hf.__dict__}
        # transformers' get_compiled_call uses `_compiled_call` while `_last_compile_config` equals the config
        hf._compiled_call, hf._last_compile_config = self._steps[key], config
        with self.attached():
            self.live.copy_(self.prefill)
            try:
                yield [_SwitchToDecode(self.live, self.decode), *processors] if self.split else processors
            finally:
                self.live.copy_(self.prefill)
                for name in ("_compiled_call", "_last_compile_config"):
                    if name in saved:
                        setattr(hf, name, saved[name])
                    else:
                        delattr(hf, name)


def foreign_hooks(model) -> list[str]:
    """Names of `model.hf`'s modules holding forward hooks other than its fast-path offsets' own."""
    offsets = getattr(model, "_offsets", None)
    ours = set() if offsets is None else {handle.id for handle in offsets._handles}
    return [name or "(the model)" for name, module in model.hf.named_modules()
            if set(module._forward_hooks) - ours or set(module._forward_pre_hooks) - ours]


def offsets_for(model) -> SteerOffsets:
    """The model's `SteerOffsets`, made on first use."""
    offsets = getattr(model, "_offsets", None)
    if offsets is None:
        offsets = model._offsets = SteerOffsets(model)
    elif offsets.live.device != model.device or offsets.live.dtype != model.dtype:
        raise RuntimeError(f"{model.name} moved to {model.device}/{model.dtype} after its first fast generate "
                           f"(offsets on {offsets.live.device}/{offsets.live.dtype}): reload it on the new device.")
    return offsets


_FAST_DEFAULT = contextvars.ContextVar("metalens_fast_default", default=False)


@contextlib.contextmanager
def fast_generation(enabled: bool = True):
    """Within the block, `metalens.generate` and `metalens.steering.generate` calls that leave `fast` unset
    take the fast path wherever it gives the same tokens: calls with Python `edits`, a `FeatureSteer`, the
    nnsight backend, or other hooks on the model keep the hook path. What a CLI's `--fast` sets."""
    token = _FAST_DEFAULT.set(bool(enabled))
    try:
        yield
    finally:
        _FAST_DEFAULT.reset(token)


def fast_by_default(model, edits=None) -> bool:
    """Whether a `generate` call with `fast` unset takes the fast path: inside `fast_generation()`, with no
    Python edits and no hooks on the model that the compiled step would leave out."""
    return _FAST_DEFAULT.get() and not edits and not foreign_hooks(model)


def _decode_step(hf):
    def step(*args, **kwargs):  # metalens' own code object: only ever compiled with the offsets attached
        return hf(*args, **kwargs)

    return step


def check_fast(model, edits) -> SteerOffsets:
    """The offsets for a fast `generate`; raises if Python edits or foreign hooks would be left out of the graph."""
    if edits:
        raise ValueError("fast=True cannot run `edits`: they are Python functions, and the compiled decode step "
                         "cannot call them. Steer with SteeringVector.apply(model, fast=True) or "
                         "metalens.steering.generate(..., fast=True), or pass fast=False to run the edits.")
    offsets = offsets_for(model)
    foreign = foreign_hooks(model)
    if foreign:
        raise ValueError(f"fast=True with Python hooks on {foreign[:3]}{' ...' if len(foreign) > 3 else ''}: the "
                         "compiled decode step would ignore them (or keep them after removal). Leave the "
                         "metalens.hooks / SteeringVector.apply block first (steer with apply(model, fast=True)), "
                         "or pass fast=False.")
    return offsets


@contextlib.contextmanager
def fast_steering(model, vectors: dict[int, Tensor], prompt: bool = True):
    """Within the block, `vectors[L]` `[d_model]` is added at `blocks.L.hook_resid_post` in every forward pass
    and in `metalens.generate(..., fast=True)` (prompt=False: generated tokens only), inside the compiled graph."""
    for layer in vectors:
        model.check_layer(layer)
    with offsets_for(model).steering(vectors, prompt) as offsets:
        yield offsets

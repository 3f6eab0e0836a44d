"""Batched, KV-cached generation with steering vectors or a rule book (HF or nnsight)."""
from __future__ import annotations

import contextlib
import warnings

import torch
from torch import Tensor

import metalens
from metalens.steering.vector import SteeringVector, _adder, check_strength, site_of


def steering_sum(model, steer, strength: float | None = None) -> dict[int, Tensor]:
    """`{layer: [d_model]}`: the total vector added at each layer for `steer`.

    steer: None (nothing), a SteeringVector, a list of them, or a RuleBook (each active
    rule at its own strength). `strength` is the strength for vectors (default 1) and, for a
    rule book, multiplies every rule's stored strength (default 1: as stored).
    """
    if steer is None:
        return {}
    if hasattr(steer, "active") and hasattr(steer, "entries"):  # a RuleBook
        pairs = [(rule.vector, rule.strength) for rule in steer.active()]
        scale = 1.0 if strength is None else check_strength(strength)
    else:
        vectors = [steer] if isinstance(steer, SteeringVector) else list(steer)
        bad = [v for v in vectors if not isinstance(v, SteeringVector)]
        if bad:
            raise TypeError(f"Expected SteeringVector(s) or a RuleBook, got {type(bad[0]).__name__}.")
        pairs = [(v, 1.0) for v in vectors]
        scale = 1.0 if strength is None else check_strength(strength)
    total: dict[int, Tensor] = {}
    for vector, own in pairs:
        vector.check_model(model)
        factor = check_strength(own) * scale
        for layer, direction in vector.directions.items():
            add = direction.to(model.device, torch.float32) * factor
            total[layer] = total[layer] + add if layer in total else add
    return {layer: vec.to(model.dtype) for layer, vec in total.items()}


def format_prompts(model, prompts: list[str], chat: bool | None = None) -> list[str]:
    """Prompts as the model should see them: wrapped in the chat template for chat models."""
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of strings, not one string: wrap it as [prompt].")
    prompts = list(prompts)
    if not prompts:
        raise ValueError("No prompts given: pass a non-empty list of strings.")
    if chat is None:
        chat = model.is_chat
    if not chat:
        return prompts
    return [model.tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                add_generation_prompt=True) for p in prompts]


def _left_padded(model, texts: list[str]):
    tok = model.tokenizer
    side = tok.padding_side
    tok.padding_side = "left"  # generation appends on the right, so pads must sit on the left
    try:
        return tok(texts, return_tensors="pt", padding=True).to(model.device)
    finally:
        tok.padding_side = side


def _gen_kwargs(model, max_new_tokens: int, do_sample: bool, **extra) -> dict:
    tok = model.tokenizer
    return dict(max_new_tokens=max_new_tokens, do_sample=do_sample, use_cache=True,
                pad_token_id=tok.pad_token_id, **extra)


@torch.inference_mode()
def _generate_hf(model, texts, total, max_new_tokens, prompt, do_sample, **extra) -> Tensor:
    batch = _left_padded(model, texts)
    fns = {site_of(layer): _adder(vec, prompt) for layer, vec in total.items()}
    with metalens.hooks(model, fns) if fns else contextlib.nullcontext():
        out = model.hf.generate(**batch, **_gen_kwargs(model, max_new_tokens, do_sample, **extra))
    return out[:, batch["input_ids"].shape[1]:]


def _generate_nnsight(model, texts, total, max_new_tokens, prompt, do_sample, **extra) -> Tensor:
    lm = model.nnsight
    side = model.tokenizer.padding_side
    model.tokenizer.padding_side = "left"
    n_prompt = _left_padded(model, texts)["input_ids"].shape[1]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nnsight warns when an open .all() loop ends at EOS
            with lm.generate(**_gen_kwargs(model, max_new_tokens, do_sample, **extra)) as tracer:
                with tracer.invoke(texts):
                    if total:
                        steps = tracer.all() if prompt else tracer.iter[1:]
                        for _ in steps:
                            for layer, vec in total.items():
                                lm.model.layers[layer].output[:] += vec
                with tracer.invoke():
                    ids = tracer.result.save()
    finally:
        model.tokenizer.padding_side = side
    return ids[:, n_prompt:]


def generate(model, prompts: list[str], steer=None, max_new_tokens: int = 32, strength: float | None = None,
             batch_size: int = 16, prompt: bool = True, do_sample: bool = False, chat: bool | None = None,
             backend: str = "hf", **generate_kwargs) -> list[str]:
    """The new text the model writes after each prompt, steered by `steer` (None: unsteered).

    steer: a SteeringVector, a list of them, or a RuleBook (see `steering_sum`). Greedy by
    default; batched with left padding and the KV cache on. The vector is added at every
    generated position, and at the prompt's positions too unless prompt=False.
    backend "nnsight" runs the same intervention through nnsight's `generate`.
    """
    if backend not in ("hf", "nnsight"):
        raise ValueError(f"backend must be 'hf' or 'nnsight', not '{backend}'.")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, not {max_new_tokens}.")
    texts = format_prompts(model, prompts, chat)
    total = steering_sum(model, steer, strength)
    run = _generate_hf if backend == "hf" else _generate_nnsight
    outputs = []
    for start in range(0, len(texts), batch_size):
        new_ids = run(model, texts[start:start + batch_size], total, max_new_tokens, prompt, do_sample,
                      **generate_kwargs)
        outputs.extend(model.tokenizer.batch_decode(new_ids, skip_special_tokens=True))
    return outputs


def generate_ids(model, prompts: list[str], steer=None, max_new_tokens: int = 32, strength: float | None = None,
                 prompt: bool = True, backend: str = "hf", chat: bool | None = None, **kw) -> Tensor:
    """Token ids of the new text for one batch of prompts, [batch, new_pos] (for tests/benchmarks)."""
    texts = format_prompts(model, prompts, chat)
    total = steering_sum(model, steer, strength)
    run = _generate_hf if backend == "hf" else _generate_nnsight
    return run(model, texts, total, max_new_tokens, prompt, kw.pop("do_sample", False), **kw)

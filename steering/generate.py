"""Steered generation: `metalens.generate` with the vectors as edits, or the same through nnsight."""
from __future__ import annotations

import contextlib
import warnings

import torch
from torch import Tensor
from transformers import LogitsProcessorList

import metalens
from metalens import sites
from metalens.fastgen import fast_by_default, fast_steering
from metalens.generate import MaskTokens, chat_prompts
from metalens.steering.feature import FeatureSteer
from metalens.steering.vector import SteeringVector, adder, check_strength

BACKENDS = ("hf", "nnsight")


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
    else:
        vectors = [steer] if isinstance(steer, SteeringVector) else list(steer)
        bad = [v for v in vectors if not isinstance(v, SteeringVector)]
        if bad:
            raise TypeError(f"Expected SteeringVector(s) or a RuleBook (or one FeatureSteer alone), got "
                            f"{type(bad[0]).__name__}.")
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
    """Prompts as the model should see them: in the chat template for chat models (chat=None: if it has one)."""
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of strings, not one string: wrap it as [prompt].")
    prompts = list(prompts)
    if not prompts:
        raise ValueError("No prompts given: pass a non-empty list of strings.")
    if chat is None:
        chat = model.is_chat
    return chat_prompts(model, prompts) if chat else prompts


def stop_ids(model) -> list[int]:
    """Token ids that end a row: the tokenizer's EOS and the model's generation-config EOS ids."""
    ids = []
    for eos in (model.tokenizer.eos_token_id, getattr(model.hf.generation_config, "eos_token_id", None)):
        ids += list(eos) if isinstance(eos, (list, tuple)) else [eos]
    return sorted({i for i in ids if i is not None})


def _cut(row: list[int], stops: set[int]) -> list[int]:
    for i, token in enumerate(row):
        if token in stops:
            return row[: i + 1]
    return row


def _hf_rows(model, texts, edits, max_new_tokens, do_sample, temperature, mask_ids, batch_size,
             seed, fast=False) -> list[list[int]]:
    # `edits` is the core's edits factory, called once per batch (fresh hooks): with prompt=False each
    # batch must skip its own prompt pass, not only the first batch's.
    return metalens.generate(model, texts, max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature,
                             stop_ids=stop_ids(model), edits=edits, mask_ids=mask_ids,
                             batch_size=batch_size, seed=seed, fast=fast).ids


def _nnsight_rows(model, texts, total, prompt, max_new_tokens, do_sample, temperature, mask_ids) -> list[list[int]]:
    # Pre-tokenized, left-padded input: nnsight's own tokenizer copy is never asked to pad.
    batch = model.tokenize(texts, side="left")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    stops = stop_ids(model)
    settings = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, use_cache=True,
                    pad_token_id=model.tokenizer.pad_token_id, eos_token_id=stops)
    if do_sample:  # as metalens.generate: temperature only, no model defaults such as top_k
        settings.update(temperature=temperature, top_k=0, top_p=1.0)
    if mask_ids is not None and len(mask_ids):
        settings["logits_processor"] = LogitsProcessorList([MaskTokens(mask_ids)])
    lm = model.nnsight
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # nnsight warns when an open .all() loop ends at EOS
        with lm.generate(**settings) as tracer:
            with tracer.invoke({"input_ids": ids, "attention_mask": mask}):
                if total:
                    for _ in tracer.all() if prompt else tracer.iter[1:]:
                        for layer, vec in total.items():
                            lm.model.layers[layer].output[:] += vec
            with tracer.invoke():
                out = tracer.result.save()
    return [_cut(row, set(stops)) for row in out[:, ids.shape[1]:].tolist()]


def generate_ids(model, prompts: list[str], steer=None, *, strength: float | None = None, prompt: bool = True,
                 max_new_tokens: int = 32, do_sample: bool = False, temperature: float = 1.0,
                 seed: int | None = None, mask_ids=None, chat: bool | None = None, batch_size: int = 16,
                 backend: str = "hf", fast: bool | None = None) -> list[list[int]]:
    """New token ids for each prompt (up to and including a stop token), steered by `steer`; arguments as in `generate`."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not '{backend}'.")
    if fast is None:
        fast = backend == "hf" and not isinstance(steer, FeatureSteer) and fast_by_default(model)
    if fast and (backend != "hf" or isinstance(steer, FeatureSteer)):
        raise ValueError("fast=True adds steering vectors inside the compiled graph of the hf backend; a FeatureSteer "
                         "(it reads the activation) and the nnsight backend run with fast=False.")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, not {max_new_tokens}.")
    texts = format_prompts(model, prompts, chat)
    if isinstance(steer, FeatureSteer):  # an edit that reads the activation: not a sum of vectors
        if backend != "hf":
            raise ValueError("A FeatureSteer runs through metalens.generate: pass backend='hf' (nnsight's backend "
                             "adds vectors only).")
        scale = 1.0 if strength is None else strength
        steer.edits(model, scale, prompt)  # checked here, before any batch runs
        return _hf_rows(model, texts, lambda: steer.edits(model, scale, prompt), max_new_tokens, do_sample,
                        temperature, mask_ids, batch_size, seed)
    total = steering_sum(model, steer, strength)
    if fast:
        with fast_steering(model, total, prompt):
            return _hf_rows(model, texts, None, max_new_tokens, do_sample, temperature, mask_ids, batch_size, seed,
                            fast=True)
    if backend == "hf":
        def edits():
            return {sites.resid_post(layer): adder(vec, prompt) for layer, vec in total.items()}

        return _hf_rows(model, texts, edits if total else None, max_new_tokens, do_sample, temperature, mask_ids,
                        batch_size, seed)
    devices = [model.device] if model.device.type == "cuda" else []
    rng = torch.random.fork_rng(devices=devices) if seed is not None else contextlib.nullcontext()
    rows: list[list[int]] = []
    with rng:
        if seed is not None:
            torch.manual_seed(seed)
        for start in range(0, len(texts), batch_size):
            rows += _nnsight_rows(model, texts[start:start + batch_size], total, prompt, max_new_tokens, do_sample,
                                  temperature, mask_ids)
    return rows


def generate(model, prompts: list[str], steer=None, *, strength: float | None = None, prompt: bool = True,
             max_new_tokens: int = 32, do_sample: bool = False, temperature: float = 1.0, seed: int | None = None,
             mask_ids=None, chat: bool | None = None, batch_size: int = 16, backend: str = "hf",
             fast: bool | None = None) -> list[str]:
    """The new text the model writes after each prompt, steered by `steer` (None: unsteered).

    steer: a SteeringVector, a list of them, or a RuleBook (see `steering_sum`), or a `FeatureSteer`
    (its edits at the SAE's site; hf backend); `strength` scales it. The vector is added at every generated position, and at the prompt's positions
    too unless prompt=False. Greedy unless do_sample=True (then `temperature` only, `seed` for
    reproducibility); `mask_ids` are never generated; chat=None wraps prompts in the chat
    template when the model has one. backend "hf" is `metalens.generate` with the vector as an
    edit (batched, left-padded, KV cache); "nnsight" runs the same intervention through nnsight's
    `generate`, for comparison. fast=True (hf backend, vectors only): `metalens.generate(..., fast=True)`
    with the vector added inside the compiled decode step, same tokens as the hook path; fast=None is
    False except inside `metalens.fast_generation()`, where vectors on the hf backend take the fast path.
    """
    rows = generate_ids(model, prompts, steer, strength=strength, prompt=prompt, max_new_tokens=max_new_tokens,
                        do_sample=do_sample, temperature=temperature, seed=seed, mask_ids=mask_ids, chat=chat,
                        batch_size=batch_size, backend=backend, fast=fast)
    return [model.tokenizer.decode(row, skip_special_tokens=True) for row in rows]

"""`generate`: the one batched generation function (greedy or sampled, with hooks and stop rules)."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm
from transformers import LogitsProcessor, LogitsProcessorList
from transformers.generation.logits_process import MinPLogitsWarper, TemperatureLogitsWarper, TopPLogitsWarper

from metalens.fastgen import check_fast, compile_config, fast_by_default
from metalens.hooks import HookFn, hooks


@dataclass
class Generation:
    """New tokens for each (prompt, sample), prompt-major: row `i * n + j` is sample j of prompt i."""

    ids: list[list[int]]  # new token ids, up to and including the stop token
    texts: list[str]  # decoded new text (special tokens dropped; cut before a stop string)
    stopped: list[bool]  # True when a stop token or string ended the row, False when max_new_tokens did


class MaskTokens(LogitsProcessor):
    """Sets the scores of `token_ids` to -inf so they are never chosen (e.g. reserved-logit heads)."""

    def __init__(self, token_ids):
        self.token_ids = torch.as_tensor(list(token_ids), dtype=torch.long)

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        scores = scores.clone()
        scores[:, self.token_ids.to(scores.device)] = float("-inf")
        return scores


class _Chain(LogitsProcessor):
    """Processors (LogitsProcessors or plain `f(input_ids, scores)`) applied in order, as one.

    transformers inspects every processor's signature at every decode step: about 15 us for a
    method and 0.5 ms for a plain function (parsed from text) on this project's CPU. One chain is
    inspected once per step, whatever it holds.
    """

    def __init__(self, processors):
        self.processors = list(processors)

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        for processor in self.processors:
            scores = processor(input_ids, scores)
        return scores


def chat_prompts(model, prompts: list[str]) -> list[str]:
    """Each prompt as the user turn of the model's chat template, ready for the assistant's reply."""
    if not model.is_chat:
        raise ValueError(f"{model.name} has no chat template: pass chat=False, or load an instruct model.")
    return [model.tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                add_generation_prompt=True) for p in prompts]


def _check(prompts, max_new_tokens: int, n: int, temperature: float, batch_size: int) -> list:
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of strings (or token-id lists), not one string: wrap it as [prompt].")
    prompts = list(prompts)
    if not prompts:
        raise ValueError("No prompts given: pass a non-empty list.")
    kinds = {isinstance(p, str) for p in prompts}
    if len(kinds) > 1:
        raise TypeError("Mix of strings and token-id lists: pass one kind of prompt.")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, not {max_new_tokens}.")
    if n < 1 or batch_size < 1:
        raise ValueError(f"n and batch_size must be >= 1 (got n={n}, batch_size={batch_size}).")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, not {temperature}; use do_sample=False for greedy decoding.")
    return prompts


class StopRule:
    """Where a row of new tokens ends: at an EOS id, or at a token whose text holds a stop string."""

    def __init__(self, tokenizer, stop_strings: list[str] = (), extra_ids=()):
        eos = tokenizer.eos_token_id
        self.ids = {*(eos if isinstance(eos, list) else [eos]), *extra_ids} - {None}
        self.strings, self.tokenizer, self._text = list(stop_strings), tokenizer, {}

    def stops(self, token: int) -> bool:
        """True when `token` ends a row."""
        return token in self.ids or bool(self.strings) and self._hits_string(token)

    def _hits_string(self, token: int) -> bool:
        if token not in self._text:
            self._text[token] = self.tokenizer.decode([token])
        return any(s in self._text[token] for s in self.strings)

    def cut(self, tokens: list[int]) -> tuple[list[int], bool]:
        """(tokens up to and including the first stop token, whether one was found)."""
        for i, token in enumerate(tokens):
            if self.stops(token):
                return tokens[: i + 1], True
        return tokens, False

    def text(self, tokens: list[int]) -> str:
        """Decoded tokens without special tokens, cut before the first stop string."""
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        for s in self.strings:
            text = text.split(s, 1)[0]
        return text


def generate(
    model,
    prompts,
    *,
    max_new_tokens: int = 32,
    do_sample: bool = False,
    temperature: float = 1.0,
    min_p: float | None = None,
    top_p: float | None = None,
    n: int = 1,
    stop_strings: list[str] = (),
    stop_ids=(),
    edits: dict[str, HookFn] | Callable[[], dict[str, HookFn]] | None = None,
    mask_ids=None,
    logits_processors=(),
    chat: bool = False,
    batch_size: int = 16,
    seed: int | None = None,
    progress: bool = False,
    fast: bool | None = None,
) -> Generation:
    """Generate for each prompt (strings, or token-id lists used as is), batched with left padding and the KV cache.

    Greedy by default; `do_sample=True` samples with `temperature`, `min_p` and `top_p` only (the
    model's own generation defaults such as top_k are not applied). `n` samples per prompt.
    Generation of a row ends at EOS, at a token in `stop_ids`, or at a token whose text holds one of
    `stop_strings` (e.g. ["\\n"] for one-line answers). `edits` are `metalens.hooks` functions active
    during generation; pass a function returning them to get fresh ones per batch (for hooks that
    count passes, e.g. to tell the prompt's pass from the decoding steps). `logits_processors` see each step's logits (softcap included, before masking
    and temperature), then `mask_ids` are set to -inf. `seed` makes sampling reproducible without
    touching the global RNG. `chat=True` wraps string prompts in the chat template.

    `fast=True` decodes with a static KV cache and a `torch.compile`d step (CUDA graphs on CUDA): the
    same tokens without Python or launch overhead per step, after a compile on the first call (and on a
    new batch size or a longer prompt + max_new_tokens; minutes on a CPU). Steering then comes from
    `SteeringVector.apply(model, fast=True)` or `metalens.steering.generate(..., fast=True)`, added inside
    the graph; `edits` and other Python hooks are refused (the graph cannot call them). `fast=None` (the
    default) is False, except inside `metalens.fast_generation()` for calls without edits or other hooks.
    """
    prompts = _check(prompts, max_new_tokens, n, temperature, batch_size)
    if fast is None:
        fast = fast_by_default(model, edits)
    offsets = check_fast(model, edits) if fast else None
    as_text = isinstance(prompts[0], str)
    if chat:
        if not as_text:
            raise ValueError("chat=True needs string prompts; apply the chat template before tokenizing.")
        prompts = chat_prompts(model, prompts)
    tok = model.tokenizer
    rule = StopRule(tok, list(stop_strings), stop_ids)
    processors = list(logits_processors)
    if mask_ids is not None and len(mask_ids):
        processors.append(MaskTokens(mask_ids))
    if do_sample:
        processors.append(TemperatureLogitsWarper(temperature))
        if min_p is not None:
            processors.append(MinPLogitsWarper(min_p))
        if top_p is not None:
            processors.append(TopPLogitsWarper(top_p))
    if not do_sample and n > 1:  # identical greedy rows: transformers refuses n > 1 here, so repeat the prompts
        prompts, n = [p for p in prompts for _ in range(n)], 1
    settings = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, num_return_sequences=n, use_cache=True,
                    pad_token_id=tok.pad_token_id, eos_token_id=sorted(rule.ids) or None)
    if do_sample:  # our warpers above only: switch off the model's own sampling defaults (e.g. gemma's top_k=64)
        settings.update(temperature=1.0, top_k=0, top_p=1.0, min_p=None)
    if stop_strings:
        settings.update(stop_strings=list(stop_strings), tokenizer=tok)
    config = compile_config(model.device) if fast else None
    if fast:  # transformers decodes with a compiled step (the prompt's pass stays eager) when the cache is static
        settings.update(cache_implementation="static", compile_config=config)
    out_ids: list[list[int]] = []
    stopped: list[bool] = []
    texts: list[str] = []
    devices = [model.device] if model.device.type == "cuda" else []
    rng = torch.random.fork_rng(devices=devices) if seed is not None else contextlib.nullcontext()
    bar = tqdm(total=len(prompts), desc="generate", unit="prompt", disable=not progress)
    with rng, torch.no_grad():
        if seed is not None:
            torch.manual_seed(seed)
        for start in range(0, len(prompts), batch_size):
            batch_edits = edits() if callable(edits) else edits
            chunk = prompts[start : start + batch_size]
            if as_text:
                batch = model.tokenize(chunk, side="left", add_special_tokens=True)
                ids, mask = batch["input_ids"], batch["attention_mask"]
            else:
                ids, mask = model.pad(chunk, side="left")
            with hooks(model, batch_edits) if batch_edits else contextlib.nullcontext(), \
                    offsets.generating(processors, config) if fast else contextlib.nullcontext(processors) as procs:
                chain = LogitsProcessorList([_Chain(procs)] if procs else [])
                out = model.hf.generate(input_ids=ids, attention_mask=mask, logits_processor=chain, **settings)
            for row in out[:, ids.shape[1] :].tolist():
                kept, ended = rule.cut(row)
                out_ids.append(kept)
                stopped.append(ended)
                texts.append(rule.text(kept))
            bar.update(len(chunk))
    bar.close()
    return Generation(out_ids, texts, stopped)

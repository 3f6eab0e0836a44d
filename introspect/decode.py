"""A small KV-cached sampling loop that reads the head from the logits each step computes."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import LogitsProcessorList

from metalens.introspect.head import HeadReadout, ReservedHead, ReservedMask


@dataclass
class Samples:
    """`n` continuations of one prompt: `tokens[i]` ends with its stop token unless truncated."""

    tokens: list[list[int]]
    truncated: list[bool]
    head_probs: list[Tensor] | None  # per sample [n_tokens, K], when a head was read out


class StopTokens:
    """Which token ids end a response: EOS, and any token whose text holds a newline."""

    def __init__(self, tokenizer, stop_on_newline: bool = True):
        self.tokenizer, self.newline, self._cache = tokenizer, stop_on_newline, {}
        self.eos = {i for i in [tokenizer.eos_token_id] if i is not None}

    def __call__(self, token_id: int) -> bool:
        if token_id in self.eos:
            return True
        if token_id not in self._cache:
            self._cache[token_id] = self.newline and "\n" in self.tokenizer.decode([token_id])
        return self._cache[token_id]


@torch.no_grad()
def sample(
    model,
    prompt_ids: list[int],
    n: int,
    max_new_tokens: int = 48,
    temperature: float = 1.0,
    head: ReservedHead | None = None,
    read_head: bool = True,
    stop: StopTokens | None = None,
    generator: torch.Generator | None = None,
) -> Samples:
    """Sample `n` continuations of `prompt_ids` (one batch, no padding needed).

    With a `head`, its reserved logits are masked out of sampling, and with `read_head` its
    distribution is recorded from the same logits at every step (no extra forward).
    `temperature=0` decodes greedily.
    """
    stop = stop or StopTokens(model.tokenizer)
    processors = LogitsProcessorList()
    readout = HeadReadout(head) if head is not None and read_head else None
    if readout is not None:
        processors.append(readout)
    if head is not None:
        processors.append(ReservedMask(head))
    device = model.device
    # The prompt is run once and its cache copied to the n samples; finished samples leave the batch.
    out = model.hf(input_ids=torch.tensor([prompt_ids], device=device), use_cache=True, logits_to_keep=1)
    cache = out.past_key_values
    cache.batch_repeat_interleave(n)
    logits = out.logits[:, -1, :].expand(n, -1)  # [rows, vocab]
    rows = list(range(n))  # which sample each batch row holds
    out_tokens: list[list[int]] = [[] for _ in range(n)]
    head_log: list[tuple[list[int], Tensor]] = []  # per step: which samples the rows held, their [rows, K]
    for _ in range(max_new_tokens):
        scores = processors(None, logits)
        if readout is not None:
            head_log.append((rows, readout.steps.pop()))  # regrouped per sample once, at the end
        if temperature == 0:
            next_ids = scores.argmax(-1)
        else:
            probs = (scores.float() / temperature).softmax(-1)
            next_ids = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        keep = []
        for j, (row, token) in enumerate(zip(rows, next_ids.tolist())):
            out_tokens[row].append(token)
            if not stop(token):
                keep.append(j)
        if not keep or len(out_tokens[rows[keep[0]]]) == max_new_tokens:
            break
        if len(keep) < len(rows):
            cache.batch_select_indices(torch.tensor(keep, device=device))
            rows = [rows[j] for j in keep]
        out = model.hf(input_ids=next_ids[keep, None], past_key_values=cache, use_cache=True)
        cache, logits = out.past_key_values, out.logits[:, -1, :]
    truncated = [not stop(t[-1]) for t in out_tokens]
    head_probs = _per_sample(head_log, n) if readout is not None else None
    return Samples(out_tokens, truncated, head_probs)


def _per_sample(head_log: list[tuple[list[int], Tensor]], n: int) -> list[Tensor]:
    """[n_tokens, K] per sample from the per-step [rows, K] readings."""
    steps: list[list[Tensor]] = [[] for _ in range(n)]
    for rows, probs in head_log:
        for row, p in zip(rows, probs.cpu()):
            steps[row].append(p)
    return [torch.stack(s) for s in steps]

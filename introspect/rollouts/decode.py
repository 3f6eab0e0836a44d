"""Sampling continuations of one prompt with `metalens.generate`, reading the head at every step."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

import metalens
from metalens.introspect.heads.head import HeadReadout, ReservedHead


@dataclass
class Samples:
    """`n` continuations of one prompt: `tokens[i]` ends with its stop token unless truncated."""

    tokens: list[list[int]]
    truncated: list[bool]
    head_probs: list[Tensor] | None  # per sample [n_tokens, K], when a head was read out


def sample(
    model,
    prompt_ids: list[int],
    n: int,
    max_new_tokens: int = 48,
    temperature: float = 1.0,
    head: ReservedHead | None = None,
    read_head: bool = True,
    stop_strings=("\n",),
    seed: int | None = None,
    min_p: float | None = None,
) -> Samples:
    """Sample `n` continuations of `prompt_ids`; a response ends at EOS or a token holding a stop string.

    With a `head`, its reserved ids are masked out of sampling, and with `read_head` its
    distribution is recorded from the same logits at every step (no extra forward). The head's
    rows must already sit in the model (`head.applied(model)`) for the readings to mean anything.
    `temperature=0` decodes greedily; `seed` makes sampling reproducible; `min_p` keeps only tokens
    with at least `min_p` x the top token's probability (after temperature).
    """
    return sample_many(model, [prompt_ids], n, max_new_tokens, temperature, head, read_head, stop_strings, seed,
                       min_p)[0]


def sample_many(
    model,
    prompts: list[list[int]],
    n: int,
    max_new_tokens: int = 48,
    temperature: float = 1.0,
    head: ReservedHead | None = None,
    read_head: bool = True,
    stop_strings=("\n",),
    seed: int | None = None,
    min_p: float | None = None,
) -> list[Samples]:
    """`sample` for several prompts in one batch (left-padded, `n` rows each): one `Samples` per prompt.

    One `metalens.generate` call, so the draws depend on the batch's composition: the same
    prompts with the same `seed` give the same samples.
    """
    readout = HeadReadout(head) if head is not None and read_head else None
    greedy = temperature == 0
    # HF generate refuses n > 1 return sequences without sampling: greedy rows are given as n prompts.
    rows, per_prompt = ([list(p) for p in prompts for _ in range(n)], 1) if greedy else ([list(p) for p in prompts], n)
    out = metalens.generate(
        model, rows, n=per_prompt, batch_size=len(rows), max_new_tokens=max_new_tokens, do_sample=not greedy,
        temperature=1.0 if greedy else temperature, min_p=None if greedy else min_p, stop_strings=list(stop_strings),
        mask_ids=list(head.token_ids) if head is not None else None,
        logits_processors=[readout] if readout is not None else [], seed=seed,
    )
    head_probs = None
    if readout is not None:
        # Finished rows stay in the batch (padded) until every row is done: keep their own steps only.
        stacked = readout.stacked().float().cpu()  # [rows, steps, K]
        head_probs = [stacked[i, : len(tokens)] for i, tokens in enumerate(out.ids)]
    return [Samples(out.ids[i * n : (i + 1) * n], [not s for s in out.stopped[i * n : (i + 1) * n]],
                    None if head_probs is None else head_probs[i * n : (i + 1) * n]) for i in range(len(prompts))]

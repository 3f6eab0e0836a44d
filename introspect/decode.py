"""Sampling continuations of one prompt with `metalens.generate`, reading the head at every step."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

import metalens
from metalens.introspect.head import HeadReadout, ReservedHead


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
) -> Samples:
    """Sample `n` continuations of `prompt_ids`; a response ends at EOS or a token holding a stop string.

    With a `head`, its reserved ids are masked out of sampling, and with `read_head` its
    distribution is recorded from the same logits at every step (no extra forward). The head's
    rows must already sit in the model (`head.applied(model)`) for the readings to mean anything.
    `temperature=0` decodes greedily; `seed` makes sampling reproducible.
    """
    readout = HeadReadout(head) if head is not None and read_head else None
    greedy = temperature == 0
    # HF generate refuses n > 1 return sequences without sampling: greedy rows are given as n prompts.
    prompts, per_prompt = ([list(prompt_ids)] * n, 1) if greedy else ([list(prompt_ids)], n)
    out = metalens.generate(
        model, prompts, n=per_prompt, batch_size=n, max_new_tokens=max_new_tokens, do_sample=not greedy,
        temperature=1.0 if greedy else temperature, stop_strings=list(stop_strings),
        mask_ids=list(head.token_ids) if head is not None else None,
        logits_processors=[readout] if readout is not None else [], seed=seed,
    )
    head_probs = None
    if readout is not None:
        # Finished rows stay in the batch (padded) until every row is done: keep their own steps only.
        stacked = readout.stacked().float().cpu()  # [n, steps, K]
        head_probs = [stacked[i, : len(tokens)] for i, tokens in enumerate(out.ids)]
    return Samples(out.ids, [not s for s in out.stopped], head_probs)

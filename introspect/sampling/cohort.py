"""Decoding many samples of one prompt in cohorts that join and leave mid-generation.

Samples started at the same checkpoint form a cohort that shares one KV cache; a new cohort
starts from a copy of the prompt's cache (the prompt runs once), and a branch from a copy of a
running sample's cache. `metalens.generate` runs one fixed batch to the end, so the adaptive and
utility samplers, whose sets of samples change at every checkpoint, decode with this instead. Its
stop rule is the one `rollouts.decode` gives `metalens.generate`: EOS, or a token whose text holds
a newline. The reserved tokens are never sampled; the head is read from each step's logits.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor

from metalens.generate import StopRule
from metalens.introspect.heads.head import ReservedHead, ReservedMask


def draw(scores: Tensor, temperature: float, min_p: float | None = None, generator=None) -> Tensor:
    """[rows, vocab] logits -> [rows] next tokens: greedy at temperature 0, else sampled from the
    softmax at `temperature`, keeping only tokens with at least `min_p` x the top probability."""
    if temperature == 0:
        return scores.argmax(-1)
    probs = (scores.float() / temperature).softmax(-1)
    if min_p is not None:
        probs = probs.where(probs >= min_p * probs.max(-1, keepdim=True).values, torch.zeros_like(probs))
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


@dataclass
class Cohort:
    """Samples decoded together: batch row i of `cache`, `logits` and `probs` holds sample `ids[i]`."""

    ids: list[int]
    cache: object  # the model's KV cache, one row per sample
    logits: Tensor  # [rows, vocab] predicting each row's next token
    probs: Tensor  # [rows, K] the head read from those logits

    def keep(self, rows: list[int]) -> None:
        """Keep only batch rows `rows` (its cache too)."""
        if len(rows) == len(self.ids):
            return
        self.ids = [self.ids[j] for j in rows]
        if rows:
            self.cache.batch_select_indices(torch.tensor(rows, device=self.logits.device))
            self.logits, self.probs = self.logits[rows], self.probs[rows]


class CohortDecoder:
    """The samples of one prompt, decoded a token at a time; the caller starts, stops and branches them.

    `tokens_of[sid]` holds each sample's tokens, `tokens` counts sampled tokens (a branch's copied
    prefix is not re-spent) and `prompt_probs` [1, K] is the head read at the prompt. The head's
    rows must sit in the model (`head.applied(model)`) while it decodes.
    """

    def __init__(self, model, head: ReservedHead, prompt_ids: list[int], max_new_tokens: int,
                 temperature: float, min_p: float | None = None, stop: StopRule | None = None, generator=None):
        self.model, self.head, self.max_new_tokens = model, head, max_new_tokens
        self.temperature, self.min_p, self.generator = temperature, min_p, generator
        self.stop_rule = stop or StopRule(model.tokenizer, ["\n"])
        self.mask = ReservedMask(head)
        out = model.hf(input_ids=torch.tensor([prompt_ids], device=model.device), use_cache=True, logits_to_keep=1)
        self.prompt_cache, self.prompt_logits = out.cache, out.logits[:, -1, :]  # [1, vocab]
        self.prompt_probs = head.probs(self.prompt_logits).float().cpu()  # [1, K]
        self.cohorts: list[Cohort] = []
        self.tokens_of: dict[int, list[int]] = {}
        self.tokens = 0

    def start(self, n: int) -> None:
        """Start `n` new samples from the prompt."""
        cache = copy.deepcopy(self.prompt_cache)
        cache.batch_repeat_interleave(n)
        ids = list(range(len(self.tokens_of), len(self.tokens_of) + n))
        self.tokens_of.update({i: [] for i in ids})
        self.cohorts.append(Cohort(ids, cache, self.prompt_logits.expand(n, -1), self.prompt_probs.expand(n, -1)))

    def branch(self, sid: int) -> None:
        """Start a new sample that continues running sample `sid`'s prefix (a copy of its cache)."""
        cohort = next(c for c in self.cohorts if sid in c.ids)
        new = len(self.tokens_of)
        self.tokens_of[new] = list(self.tokens_of[sid])  # the text of a branch starts with its parent's prefix
        twin = Cohort(list(cohort.ids), copy.deepcopy(cohort.cache), cohort.logits, cohort.probs)
        twin.keep([cohort.ids.index(sid)])
        twin.ids = [new]
        self.cohorts.append(twin)

    def step(self) -> list[tuple[int, Tensor]]:
        """Sample one token for every running sample; returns (id, head reading [K] it ended on) of the
        samples that finished (a stop token, or `max_new_tokens`)."""
        finished = []
        for cohort in self.cohorts:
            next_ids = draw(self.mask(None, cohort.logits), self.temperature, self.min_p, self.generator)
            keep = []
            for j, (sid, token) in enumerate(zip(cohort.ids, next_ids.tolist())):
                self.tokens_of[sid].append(token)
                self.tokens += 1
                if self.stop_rule.stops(token) or len(self.tokens_of[sid]) >= self.max_new_tokens:
                    finished.append((sid, cohort.probs[j]))
                else:
                    keep.append(j)
            self._advance(cohort, next_ids, keep)
        self.cohorts = [c for c in self.cohorts if c.ids]
        return finished

    def stop(self, ids) -> None:
        """Stop running samples `ids` (their tokens stay in `tokens_of`)."""
        ids = set(ids)
        for cohort in self.cohorts:
            cohort.keep([j for j, sid in enumerate(cohort.ids) if sid not in ids])
        self.cohorts = [c for c in self.cohorts if c.ids]

    def running(self) -> list[tuple[int, Tensor]]:
        """(id, current head reading [K]) of every running sample, in start order."""
        return sorted(((sid, c.probs[j]) for c in self.cohorts for j, sid in enumerate(c.ids)), key=lambda x: x[0])

    def texts(self) -> dict[int, str]:
        """Sample id -> decoded text, finished and stopped samples alike."""
        return {i: self.model.tokenizer.decode(t, skip_special_tokens=True) for i, t in self.tokens_of.items()}

    def _advance(self, cohort: Cohort, next_ids: Tensor, keep: list[int]) -> None:
        """Feed the kept rows' new tokens; refresh their logits and head reading."""
        cohort.keep(keep)
        if not keep:
            return
        out = self.model.hf(input_ids=next_ids[keep, None], cache=cohort.cache, use_cache=True)
        cohort.cache, cohort.logits = out.cache, out.logits[:, -1, :]
        cohort.probs = self.head.probs(cohort.logits).float().cpu()

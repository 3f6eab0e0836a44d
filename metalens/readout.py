"""`next_token_logprobs`: the probability a model gives a few tokens next, read at chosen positions.

Every area that asks the model a multiple-choice question (A/B behaviour items, a MENTOR
assessor's verdict, a neurofeedback label, an atlas confidence option) reads it this way: one
forward pass with hooks that stops at the final norm, then only the read positions are
unembedded, through only the asked rows.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor
from tqdm.auto import tqdm

from metalens.forward import run_with_cache
from metalens.sites import FINAL_NORM


@dataclass
class NextTokenReads:
    """What `next_token_logprobs` read, one entry per prompt.

    logprobs[i]: [n_reads_i, n_tokens_i] log p(token | prefix) under the *full* vocabulary (so
        `logsumexp` over the last axis is the mass the asked tokens hold); renormalise over the
        options with `.log_softmax(-1)`.
    acts[site][i]: [n_reads_i, d] activations at the read positions (only for `sites` asked).
    """

    logprobs: list[Tensor]
    acts: dict[str, list[Tensor]] = field(default_factory=dict)

    def stacked(self) -> Tensor:
        """[n_prompts, n_tokens]: one read per prompt with the same tokens, stacked."""
        if any(lp.shape[0] != 1 for lp in self.logprobs):
            raise ValueError("stacked() needs exactly one read per prompt; index .logprobs instead.")
        return torch.cat(self.logprobs)


def _as_ids(model, prompt) -> list[int]:
    if isinstance(prompt, str):
        return model.tokenizer(prompt)["input_ids"]
    ids = [int(t) for t in prompt]
    if not ids:
        raise ValueError("An empty prompt has no next token to read: give at least one token.")
    return ids


def _batches(lengths: list[int], batch_size: int, max_tokens: int | None):
    """Consecutive index chunks of at most `batch_size` rows and `max_tokens` padded tokens."""
    chunk: list[int] = []
    for i, n in enumerate(lengths):
        width = max([lengths[j] for j in chunk] + [n])
        if chunk and (len(chunk) == batch_size or (max_tokens and width * (len(chunk) + 1) > max_tokens)):
            yield chunk
            chunk = []
        chunk.append(i)
    if chunk:
        yield chunk


@torch.inference_mode()
def next_token_logprobs(model, prompts, token_ids, *, positions=None, edits=None, sites=(), batch_size: int = 8,
                        max_tokens: int | None = None, progress: bool = False, desc: str = "read") -> NextTokenReads:
    """Log-probabilities of `token_ids` as the next token after each read position of each prompt.

    prompts: strings (tokenised with the model's special tokens) or token-id lists.
    token_ids: one list of ids for every prompt, or one list per prompt (options that differ by item).
    positions: None reads after each prompt's last token; else one list per prompt of the positions
        whose *next* token is read (position p reads the distribution over token p + 1).
    edits: `{site: fn}` active during the pass (e.g. a steering vector's `edits(model, strength)`).
    sites: also keep these activations at the read positions (`NextTokenReads.acts`).
    Rows are right-padded, so causal attention never sees padding and positions stay as given.
    """
    seqs = [_as_ids(model, p) for p in prompts]
    if not seqs:
        raise ValueError("No prompts given: pass a non-empty list.")
    per_prompt = token_ids and isinstance(token_ids[0], (list, tuple, range, Tensor))
    if per_prompt and len(token_ids) != len(seqs):
        raise ValueError(f"token_ids has {len(token_ids)} lists for {len(seqs)} prompts: give one per prompt.")
    if positions is None:
        positions = [[len(s) - 1] for s in seqs]
    elif len(positions) != len(seqs):
        raise ValueError(f"positions has {len(positions)} lists for {len(seqs)} prompts: give one per prompt.")
    for s, pos in zip(seqs, positions):
        if any(not 0 <= int(p) < len(s) for p in pos):
            raise ValueError(f"Read positions {list(pos)} fall outside a prompt of {len(s)} tokens.")
    keep = list(dict.fromkeys([*sites, FINAL_NORM]))
    logprobs: list[Tensor] = [None] * len(seqs)  # type: ignore[list-item]
    acts: dict[str, list[Tensor]] = {s: [None] * len(seqs) for s in sites}  # type: ignore[misc]
    chunks = list(_batches([len(s) for s in seqs], batch_size, max_tokens))
    for chunk in tqdm(chunks, desc=desc, disable=not progress):
        ids, mask = model.pad([seqs[i] for i in chunk], side="right")  # [batch, pos]
        cache = run_with_cache(model, ids, mask, sites=keep, edits=edits)
        hidden = cache[FINAL_NORM]  # [batch, pos, d_model]
        for row, i in enumerate(chunk):
            pos = torch.as_tensor([int(p) for p in positions[i]], device=hidden.device)
            logits = model.final_logits(hidden[row, pos]).float()  # [n_reads, vocab], softcap included
            wanted = torch.as_tensor(list(token_ids[i] if per_prompt else token_ids), device=logits.device)
            logprobs[i] = logits.log_softmax(-1)[:, wanted].cpu()  # [n_reads, n_tokens]
            for s in sites:
                acts[s][i] = cache[s][row, pos].float().cpu()  # [n_reads, d]
    return NextTokenReads(logprobs, acts)

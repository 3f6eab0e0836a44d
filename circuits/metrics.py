"""Task metrics on last-position logits, the batched inputs they need, and the one task forward pass."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

import metalens
from metalens import sites
from metalens.circuits.tasks import ContrastTask, answer_token
from metalens.forward import Cache


@dataclass
class TaskBatch:
    """Tokenized clean/corrupted prompts (right-padded, equal lengths per pair) and answer ids.

    For prob_diff, `good` and `bad` hold each pair's answer-token ids, right-padded with -1
    (the sets differ in size from pair to pair; ids, not vocabulary masks, keep it small).
    """

    clean_ids: Tensor  # [batch, pos]
    corrupted_ids: Tensor  # [batch, pos]
    mask: Tensor  # [batch, pos]
    last: Tensor  # [batch] index of each prompt's last token
    answer: Tensor  # [batch]
    wrong: Tensor  # [batch]
    metric: str
    good: Tensor | None = None  # [batch, n_good] token ids, -1 padding (prob_diff)
    bad: Tensor | None = None  # [batch, n_bad] token ids, -1 padding (prob_diff)


def prepare(model, task: ContrastTask) -> TaskBatch:
    """Tokenize a task; raises when a pair's prompts differ in token length (they cannot be patched)."""
    clean, corrupted = model.tokenize(task.clean), model.tokenize(task.corrupted)
    n_clean, n_corr = clean["attention_mask"].sum(1), corrupted["attention_mask"].sum(1)
    bad = (n_clean != n_corr).nonzero().flatten().tolist()
    if bad:
        i = bad[0]
        raise ValueError(
            f"Task '{task.name}' pair {i}: clean has {int(n_clean[i])} tokens, corrupted {int(n_corr[i])}. "
            f"Patching needs equal lengths: edit {task.corrupted[i]!r} to match {task.clean[i]!r}."
        )
    width = max(clean["input_ids"].shape[1], corrupted["input_ids"].shape[1])

    def pad(ids, value):
        return torch.nn.functional.pad(ids, (0, width - ids.shape[1]), value=value)

    tok, dev = model.tokenizer, model.device
    good = bad = None
    if task.good is not None:
        good, bad = (_padded(sets, dev) for sets in _answer_sets(tok, task))
    return TaskBatch(
        clean_ids=pad(clean["input_ids"], tok.pad_token_id),
        corrupted_ids=pad(corrupted["input_ids"], tok.pad_token_id),
        mask=pad(clean["attention_mask"], 0),
        last=n_clean - 1,
        answer=torch.tensor([answer_token(tok, p, a) for p, a in zip(task.clean, task.answers)], device=dev),
        wrong=torch.tensor([answer_token(tok, p, a) for p, a in zip(task.corrupted, task.wrong)], device=dev),
        metric=task.metric,
        good=good,
        bad=bad,
    )


def _answer_sets(tokenizer, task: ContrastTask) -> tuple[list[list[int]], list[list[int]]]:
    """Each pair's good and bad answer-token ids (first token after the clean prompt, deduplicated)."""
    good, bad = [], []
    for i, prompt in enumerate(task.clean):
        g = sorted({answer_token(tokenizer, prompt, a) for a in task.good[i]})
        b = sorted({answer_token(tokenizer, prompt, a) for a in task.bad[i]})
        both = set(g) & set(b)
        if both:
            raise ValueError(f"Task '{task.name}' pair {i}: token(s) {sorted(both)} start both a good and a bad answer "
                             f"after {prompt!r}: prob_diff needs answers whose first tokens differ.")
        good.append(g), bad.append(b)
    return good, bad


def _padded(sets: list[list[int]], device) -> Tensor:
    """[len(sets), longest] ids, right-padded with -1."""
    width = max(len(s) for s in sets)
    return torch.tensor([s + [-1] * (width - len(s)) for s in sets], device=device)


def _set_prob(probs: Tensor, ids: Tensor) -> Tensor:
    """[batch] total probability of each row's ids (-1 padding counts nothing)."""
    return (probs.gather(-1, ids.clamp(min=0)) * (ids >= 0)).sum(-1)


def embeddings(model, ids: Tensor) -> Tensor:
    """[batch, pos, d_model] input embeddings as the blocks see them (gemma's sqrt(d_model) scale included)."""
    return metalens.run_with_cache(model, ids, sites=[sites.EMBED])[sites.EMBED]


def task_forward(model, batch: TaskBatch, ids: Tensor | None = None, *, embeds: Tensor | None = None,
                 keep=(), edits: dict | None = None, grad: bool = False) -> tuple[Tensor, Cache]:
    """[batch, vocab] float32 logits at each prompt's last token, and the tensors kept at `keep`.

    Runs on `ids` (clean ids by default) or on `embeds`. The pass stops at the final norm and
    unembeds only the last positions: the unembedding of every position would cost more than
    the blocks on a 262k-token vocabulary. `grad=True` builds the graph (see `metalens.run_with_cache`).
    """
    if embeds is None and ids is None:
        ids = batch.clean_ids
    cache = metalens.run_with_cache(model, ids, batch.mask, sites=[*keep, sites.FINAL_NORM], inputs_embeds=embeds,
                                    edits=edits, grad=grad)
    hidden = cache[sites.FINAL_NORM]  # [batch, pos, d_model]
    with torch.set_grad_enabled(grad):
        logits = model.final_logits(hidden[torch.arange(len(batch.last), device=hidden.device), batch.last])
    return logits.float(), cache


def last_logits(model, batch: TaskBatch, ids: Tensor | None = None, *, embeds: Tensor | None = None,
                edits: dict | None = None) -> Tensor:
    """[batch, vocab] float32 logits at each prompt's last token (clean ids by default), no graph."""
    return task_forward(model, batch, ids, embeds=embeds, edits=edits)[0]


def metric_value(batch: TaskBatch, logits: Tensor, reference: Tensor | None = None) -> Tensor:
    """Mean metric over the batch (a 0-d tensor, differentiable); see `metric_per_pair`."""
    return metric_per_pair(batch, logits, reference).mean()


def metric_per_pair(batch: TaskBatch, logits: Tensor, reference: Tensor | None = None) -> Tensor:
    """[batch] metric of each pair, computed in float32.

    logit_diff: logit(answer) - logit(wrong); logprob: log p(answer);
    kl: KL(p_reference || p), with `reference` the clean logits (0 on the clean run);
    prob_diff: sum p(good) - sum p(bad), each pair's answer sets (Hanna et al. 2023's greater-than metric).
    """
    logits = logits.float()
    rows = torch.arange(len(batch.answer), device=logits.device)
    if batch.metric == "logit_diff":
        return logits[rows, batch.answer] - logits[rows, batch.wrong]
    logp = torch.log_softmax(logits, -1)
    if batch.metric == "prob_diff":
        if batch.good is None:
            raise ValueError("The prob_diff metric needs a task with `good` and `bad` answer sets.")
        probs = logp.exp()
        return _set_prob(probs, batch.good) - _set_prob(probs, batch.bad)
    if batch.metric == "logprob":
        return logp[rows, batch.answer]
    if reference is None:
        raise ValueError("The kl metric needs the clean logits as `reference`.")
    ref = torch.log_softmax(reference.float(), -1)
    return (ref.exp() * (ref - logp)).sum(-1)

"""Prompt pairs from the models' own solutions, the inputs of Thinking Sparks (arXiv 2509.25758).

For each arithmetic problem the clean prompt is the problem followed by the opening of the
*post-trained* model's greedy solution, the corrupted prompt the same problem followed by the
opening of the *base* model's; both openings are cut to the same number of tokens, so the pair
can be patched position by position, and pairs whose openings are identical are dropped (they
carry no contrast). Patching base-model activations into the post-trained model's run then asks
which heads carry the difference between how the two models go on.

Metric: `kl` by default, as in the paper. It is KL(p_clean || p) at the last position, where the
reference p_clean is the next-token distribution *of the model being traced* on the clean
prompt (the post-trained opening): the base circuit is traced against the base model's own clean
run, the post circuit against the post model's, each checkpoint against its own. So each circuit
holds the heads that model needs to keep its own continuation of the post-trained opening.
(How far apart the two models' continuations are is `model_divergence`.) `logit_diff` scores
logit(post model's next token) - logit(base model's next token) instead.
"""
from __future__ import annotations

import warnings

import torch
from torch import Tensor

import metalens
from metalens.circuits.metrics import last_logits, prepare
from metalens.circuits.tasks import ContrastTask
from metalens.tasks.arithmetic import Problem


def _opening(model, ids: list[int]) -> list[int]:
    """Generated ids before the first end-of-sequence or newline token (the first line of the solution)."""
    specials = set(model.tokenizer.all_special_ids)
    for i, t in enumerate(ids):
        if t in specials or "\n" in model.tokenizer.decode([t]):
            return ids[:i]
    return ids


def own_solution_task(base, post, problems: list[Problem], n_tokens: int = 8, metric: str = "kl",
                      name: str = "own-solutions") -> ContrastTask:
    """Clean = problem + `post`'s greedy solution opening, corrupted = problem + `base`'s, equal token lengths.

    Both models write up to `n_tokens` + 1 tokens greedily (first line only); the openings are the
    first m tokens of each, m = min(n_tokens, shorter solution - 1), shortened further where the
    re-tokenized texts would differ in length. The answers are each model's next token after its
    opening (`answers`: post's, `wrong`: base's), used by `logit_diff`. Pairs with identical
    openings, or none left at all, are dropped with a warning; raises when no pair is left.
    """
    if n_tokens < 1:
        raise ValueError(f"n_tokens must be >= 1, not {n_tokens}.")
    prompts = [p.prompt for p in problems]
    post_ids = metalens.generate(post, prompts, max_new_tokens=n_tokens + 1).ids
    base_ids = metalens.generate(base, prompts, max_new_tokens=n_tokens + 1).ids
    tok = post.tokenizer
    n_tok = lambda text: len(tok(text)["input_ids"])
    clean, corrupted, answers, wrong = [], [], [], []
    identical = short = 0
    for prompt, a, b in zip(prompts, post_ids, base_ids):
        a, b = _opening(post, a), _opening(base, b)
        m = min(n_tokens, len(a) - 1, len(b) - 1)
        if m >= 1 and a[:m] == b[:m]:
            identical += 1
            continue
        for k in range(m, 0, -1):
            c, x = prompt + tok.decode(a[:k]), prompt + tok.decode(b[:k])
            if c != x and n_tok(c) == n_tok(x):
                clean.append(c), corrupted.append(x)
                answers.append(tok.decode(a[k : k + 1])), wrong.append(tok.decode(b[k : k + 1]))
                break
        else:
            short += 1
    if identical or short:
        warnings.warn(f"own-solution pairs: dropped {identical} with identical openings and {short} with no opening "
                      f"of equal token length; {len(clean)} of {len(problems)} left.", stacklevel=2)
    if not clean:
        raise ValueError(f"No own-solution pairs left from {len(problems)} problems: the two models open their "
                         "solutions alike (are they the same model?) or too briefly; give more problems or n_tokens.")
    return ContrastTask(name, clean, corrupted, answers, wrong, metric)


@torch.no_grad()
def model_divergence(reference, model, task: ContrastTask) -> Tensor:
    """[n_pairs] KL(p_reference || p_model) of the next token after each clean prompt (0 for the same model)."""
    batch = prepare(reference, task.with_metric("kl"))
    ref = torch.log_softmax(last_logits(reference, batch), -1)
    logp = torch.log_softmax(last_logits(model, batch), -1)
    return (ref.exp() * (ref - logp)).sum(-1)

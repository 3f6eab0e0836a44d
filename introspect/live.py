"""Adaptive sampling while generating: the head, read from each step's logits, decides which
samples to continue, which to prune and when to start new ones (the rule in policy.py).

Samples started at the same checkpoint form a cohort that shares one KV cache; a new cohort
starts from a copy of the prompt's cache, so the prompt is run once. This loop is its own (cohorts
join and leave mid-generation, which `metalens.generate` does not do); its stop rule is the one
`decode.sample` gives `metalens.generate`: EOS, or a token whose text holds a newline.
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from metalens.generate import StopRule
from metalens.tasks.arithmetic import extract_answer
from metalens.introspect.head import ReservedHead, ReservedMask
from metalens.introspect.policy import decide
from metalens.introspect.sampler import weighted_vote


@dataclass
class AdaptiveResult:
    """What a live adaptive run produced and spent."""

    answer: object  # the head-weighted vote over finished samples (None if none finished)
    texts: dict[int, str]  # sample id -> text, finished and pruned samples alike
    finished: list[int]
    pruned: list[int]
    p_final: dict[int, float]  # finished sample id -> P(correct) at its last reading
    tokens: int  # tokens sampled in all
    steps: int  # decode steps (the latency)
    events: list[dict] = field(default_factory=list)  # per checkpoint: step, pruned, started
    token_ids: dict[int, list[int]] | None = None  # sample id -> its token ids (the utility sampler fills it)


@dataclass
class _Cohort:
    ids: list[int]  # the sample each batch row holds
    cache: object
    logits: Tensor  # [rows, vocab] predicting each row's next token
    probs: Tensor  # [rows, K] the head read from those logits


@torch.no_grad()
def adaptive_generate(
    model,
    head: ReservedHead,
    prompt_ids: list[int],
    alpha: float,
    beta: float = 0.0,
    every: int = 4,
    initial: int = 1,
    max_samples: int = 8,
    max_new_tokens: int = 48,
    temperature: float = 0.3,
    stop: StopRule | None = None,
    seed: int | None = None,
    answer_fn=extract_answer,
) -> AdaptiveResult:
    """Generate up to `max_samples` answers to one prompt, spending tokens where the head says they pay.

    The reserved logits are masked out of sampling; the head is read from the same logits, so
    the only extra work is the decision itself. `temperature=0` decodes greedily; `seed` makes
    sampling reproducible (otherwise the global RNG draws).
    """
    if initial < 1 or max_samples < initial:
        raise ValueError(f"Need 1 <= initial ({initial}) <= max_samples ({max_samples}).")
    generator = None if seed is None else torch.Generator(model.device).manual_seed(seed)
    with head.applied(model):  # the head's rows sit in the unembedding only for this call
        return _run(model, head, prompt_ids, alpha, beta, every, initial, max_samples, max_new_tokens,
                    temperature, stop, generator, answer_fn)


def _run(model, head, prompt_ids, alpha, beta, every, initial, max_samples, max_new_tokens, temperature, stop,
         generator, answer_fn) -> AdaptiveResult:
    stop, mask, spec = stop or StopRule(model.tokenizer, ["\n"]), ReservedMask(head), head.spec
    out = model.hf(input_ids=torch.tensor([prompt_ids], device=model.device), use_cache=True, logits_to_keep=1)
    prompt_cache, prompt_logits = out.cache, out.logits[:, -1, :]  # [1, vocab]
    prompt_probs = head.probs(prompt_logits).float().cpu()  # [1, K]
    prior = (float(spec.p_correct(prompt_probs)[0]), float(spec.expected_remaining(prompt_probs)[0]))
    reading = lambda probs: (spec.p_correct(probs).tolist(), spec.expected_remaining(probs).tolist())  # noqa: E731

    cohorts: list[_Cohort] = []
    tokens_of: dict[int, list[int]] = {}

    def start(n: int) -> None:
        cache = copy.deepcopy(prompt_cache)
        cache.batch_repeat_interleave(n)
        ids = list(range(len(tokens_of), len(tokens_of) + n))
        tokens_of.update({i: [] for i in ids})
        cohorts.append(_Cohort(ids, cache, prompt_logits.expand(n, -1), prompt_probs.expand(n, -1)))

    start(initial)
    finished, pruned, p_final, events = [], [], {}, []
    tokens = steps = since = 0
    while cohorts:
        any_finished = False
        for cohort in cohorts:
            p_now, _ = reading(cohort.probs)
            scores = mask(None, cohort.logits)
            if temperature == 0:
                next_ids = scores.argmax(-1)
            else:
                next_ids = torch.multinomial((scores.float() / temperature).softmax(-1), 1, generator=generator)[:, 0]
            keep = []
            for j, (sid, token) in enumerate(zip(cohort.ids, next_ids.tolist())):
                tokens_of[sid].append(token)
                tokens += 1
                if stop.stops(token) or len(tokens_of[sid]) == max_new_tokens:
                    finished.append(sid)
                    p_final[sid] = p_now[j]
                    any_finished = True
                else:
                    keep.append(j)
            _advance(model, head, cohort, next_ids, keep)
        cohorts = [c for c in cohorts if c.ids]
        steps += 1
        since += 1
        if since < every and not any_finished:
            continue
        since = 0
        running = {}
        for cohort in cohorts:
            for sid, p, e in zip(cohort.ids, *reading(cohort.probs)):
                running[sid] = (p, e)
        running = dict(sorted(running.items()))  # start order, as in replay
        cut, n_new = decide(running, [p_final[i] for i in finished], prior, alpha, beta,
                            can_start=max_samples - len(tokens_of))
        for cohort in cohorts:
            _drop(cohort, [j for j, sid in enumerate(cohort.ids) if sid not in cut])
        cohorts = [c for c in cohorts if c.ids]
        pruned += cut
        if n_new:
            start(n_new)
        events.append({"step": steps, "pruned": cut, "started": n_new, "running": len(running) - len(cut) + n_new})
    texts = {i: model.tokenizer.decode(t, skip_special_tokens=True) for i, t in tokens_of.items()}
    answer = weighted_vote([answer_fn(texts[i]) for i in finished], [p_final[i] for i in finished])
    return AdaptiveResult(answer, texts, finished, pruned, p_final, tokens, steps, events)


def _drop(cohort: _Cohort, keep: list[int]) -> None:
    """Keep only batch rows `keep` of a cohort (its cache too)."""
    if len(keep) == len(cohort.ids):
        return
    cohort.ids = [cohort.ids[j] for j in keep]
    if keep:
        cohort.cache.batch_select_indices(torch.tensor(keep, device=cohort.logits.device))
        cohort.logits, cohort.probs = cohort.logits[keep], cohort.probs[keep]


def _advance(model, head: ReservedHead, cohort: _Cohort, next_ids: Tensor, keep: list[int]) -> None:
    """Feed the kept rows' new tokens; refresh their logits and head reading."""
    _drop(cohort, keep)
    if not keep:
        return
    out = model.hf(input_ids=next_ids[keep, None], cache=cohort.cache, use_cache=True)
    cohort.cache, cohort.logits = out.cache, out.logits[:, -1, :]
    cohort.probs = head.probs(cohort.logits).float().cpu()


def live_runs(model, head, records: list[dict], task_ids: list[int], alphas, beta: float = 0.0, every: int = 4,
              seed: int = 0) -> list[dict]:
    """The sampler run for real on rollout tasks `task_ids`, with the rollouts' settings and pool size:
    per alpha, accuracy and mean tokens / decode steps / seconds per problem, next to majority@N
    over the stored rollouts of the same problems, N the smallest that spends as many tokens."""
    by_id, pool = {r["task_index"]: r for r in records}, len(records[0]["completions"])
    config = json.loads((Path(head.metadata["rollouts"]) / "manifest.json").read_text())
    rows = []
    for alpha in alphas:
        correct, tokens, steps, seconds = [], [], [], []
        for i in task_ids:
            start = time.perf_counter()
            run = adaptive_generate(model, head, by_id[i]["prompt_ids"], alpha, beta, every, max_samples=pool,
                                    max_new_tokens=config["max_new_tokens"], temperature=config["temperature"],
                                    seed=seed + i)
            seconds.append(time.perf_counter() - start)
            correct.append(int(run.answer == by_id[i]["answer"]))
            tokens.append(run.tokens)
            steps.append(run.steps)
        mean_tokens = sum(tokens) / len(tokens)
        rows.append({"alpha": alpha, "n_problems": len(task_ids), "accuracy": float(sum(correct) / len(correct)),
                     "tokens": float(mean_tokens), "decode_steps": float(sum(steps) / len(steps)),
                     "seconds": float(sum(seconds) / len(seconds)),
                     **_stored_majority([by_id[i] for i in task_ids], mean_tokens)})
    return rows


def _stored_majority(records: list[dict], tokens: float) -> dict:
    """Majority@N over stored samples of these problems, N the smallest spending >= `tokens` on average."""
    for n in range(1, len(records[0]["completions"]) + 1):
        spent = sum(len(c) for r in records for c in r["completions"][:n]) / len(records)
        if spent >= tokens:
            hits = []
            for r in records:
                answers = [extract_answer(t) for t in r["texts"][:n]]
                hits.append(int(weighted_vote(answers) == r["answer"]))
            return {"stored_majority_n": n, "stored_majority_tokens": spent,
                    "stored_majority_accuracy": sum(hits) / len(hits)}
    return {"stored_majority_n": None}

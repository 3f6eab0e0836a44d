"""Adaptive sampling while generating: the head, read from each step's logits, decides which
samples to continue, which to prune and when to start new ones (the rule in policy.py).

Samples are decoded by `cohort.CohortDecoder`, the decoder the utility sampler (`branching`) shares.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from metalens.generate import StopRule
from metalens.tasks.arithmetic import extract_answer
from metalens.introspect.heads.head import ReservedHead
from metalens.introspect.sampling.cohort import CohortDecoder
from metalens.introspect.sampling.policy import decide
from metalens.introspect.sampling.sampler import weighted_vote


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
        return _decode(model, head, prompt_ids, alpha, beta, every, initial, max_samples, max_new_tokens,
                    temperature, stop, generator, answer_fn)


def _decode(model, head, prompt_ids, alpha, beta, every, initial, max_samples, max_new_tokens, temperature, stop,
         generator, answer_fn) -> AdaptiveResult:
    spec = head.spec
    decoder = CohortDecoder(model, head, prompt_ids, max_new_tokens, temperature, stop=stop, generator=generator)
    prompt_probs = decoder.prompt_probs  # [1, K]
    prior = (float(spec.p_correct(prompt_probs)[0]), float(spec.expected_remaining(prompt_probs)[0]))
    decoder.start(initial)
    finished, pruned, p_final, events = [], [], {}, []
    steps = since = 0
    while decoder.cohorts:
        ended = decoder.step()
        for sid, probs in ended:
            finished.append(sid)
            p_final[sid] = float(spec.p_correct(probs))
        steps += 1
        since += 1
        if since < every and not ended:
            continue
        since = 0
        running = {sid: (float(spec.p_correct(probs)), float(spec.expected_remaining(probs)))
                   for sid, probs in decoder.running()}  # start order, as in replay
        cut, n_new = decide(running, [p_final[i] for i in finished], prior, alpha, beta,
                            can_start=max_samples - len(decoder.tokens_of))
        decoder.stop(cut)
        pruned += cut
        if n_new:
            decoder.start(n_new)
        events.append({"step": steps, "pruned": cut, "started": n_new, "running": len(running) - len(cut) + n_new})
    texts = decoder.texts()
    answer = weighted_vote([answer_fn(texts[i]) for i in finished], [p_final[i] for i in finished])
    return AdaptiveResult(answer, texts, finished, pruned, p_final, decoder.tokens, steps, events)


def live_runs(model, head, records: list[dict], task_ids: list[int], alphas, beta: float = 0.0, every: int = 4,
              seed: int = 0, *, settings: dict) -> list[dict]:
    """The sampler run for real on rollout tasks `task_ids`, with the rollouts' `settings` (their manifest,
    `rollouts.rollouts_settings`) and pool size:
    per alpha, accuracy and mean tokens / decode steps / seconds per problem, next to majority@N
    over the stored rollouts of the same problems, N the smallest that spends as many tokens."""
    by_id, pool = {r["task_index"]: r for r in records}, len(records[0]["completions"])
    rows = []
    for alpha in alphas:
        correct, tokens, steps, seconds = [], [], [], []
        for i in task_ids:
            start = time.perf_counter()
            run = adaptive_generate(model, head, by_id[i]["prompt_ids"], alpha, beta, every, max_samples=pool,
                                    max_new_tokens=settings["max_new_tokens"], temperature=settings["temperature"],
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

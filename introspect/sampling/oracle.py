"""Oracle readings for stored sample pools: a head of known quality, built from the samples' true
correctness, in exactly the shape a trained head's readings have (`PoolSample`), so the replayed
samplers (`sampler.pareto`) run on them unchanged.

Quality q in [0, 1] is the reading's reliability. Each sample gets a bit x: its own correctness with
probability q, otherwise the correctness of a sample drawn at random from the whole store (a shuffled
reading: it carries nothing about this sample or its question). The reading is the store-calibrated
P(correct | x) = (1 - q) rho + q x (rho: the store's share of right samples), so its AUROC against
correctness is 0.5 + q / 2 in expectation (ties count half), within every question as over the store:
q = 2 AUROC - 1. At q = 0 every reading is rho, a head that knows nothing; at q = 1 it is the truth.

As with a trained head, position 0 (the state after the prompt, before any response token) reads the
question alone, so it is the same for every sample of a question: the mean of the pool's sample
readings (at q = 1 the question's solve rate). Positions 1.. hold the sample's reading. The remaining-
length reading is the stored head's (`length="head"`) or the true tokens left (`length="true"`; the
pool's mean length at position 0).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from metalens import stats
from metalens.introspect.evaluation.metrics import within_problem_auroc
from metalens.introspect.sampling.sampler import PoolSample

UNIT = ("oracle reading reliability q in [0, 1]: each sample is read by its own correctness with probability q, "
        "else by that of a random sample of the store, as the store-calibrated P(correct) = (1 - q) rho + q x; "
        "expected AUROC against correctness 0.5 + q / 2 (q = 2 AUROC - 1); 0 reads rho everywhere (no information), "
        "1 the truth")
LENGTHS = ("head", "true")


def check_quality(quality) -> float:
    """`quality` as a float in [0, 1]; raises naming the bad value."""
    q = float(quality)
    if not 0 <= q <= 1:
        raise ValueError(f"quality {quality!r}: an oracle's reading reliability lies in [0, 1] (0 reads nothing, "
                         "1 reads the truth).")
    return q


def base_rate(pools: list[list[PoolSample]]) -> float:
    """The share of right samples over all pools (rho)."""
    rewards = [s.reward for pool in pools for s in pool]
    if not rewards:
        raise ValueError("No samples in these pools: build them from a rollout store with build_pools.")
    return float(np.mean(rewards))


def oracle_pools(pools: list[list[PoolSample]], quality: float, seed: int,
                 length: str = "head") -> list[list[PoolSample]]:
    """The same pools (answers, rewards, lengths, order) read by an oracle of reliability `quality`
    (see the module docstring); `seed` picks which samples are misread and what they read."""
    q = check_quality(quality)
    if length not in LENGTHS:
        raise ValueError(f"length={length!r}: read the remaining length from the stored head ('head') or the "
                         "true tokens left ('true').")
    rho = base_rate(pools)
    truth = np.array([s.reward for pool in pools for s in pool], dtype=float)  # [n_samples], pool by pool
    rng = np.random.default_rng(seed)
    informed = rng.random(len(truth)) < q  # [n_samples] read from the sample itself
    shuffled = truth[rng.integers(0, len(truth), len(truth))]  # [n_samples] another sample's correctness
    bit = np.where(informed, truth, shuffled)
    reading = (1 - q) * rho + q * bit  # [n_samples] P(correct | bit), calibrated over the store
    out, i = [], 0
    for pool in pools:
        mine = reading[i: i + len(pool)]
        i += len(pool)
        prompt = float(mine.mean())  # the question alone: what the oracle expects of any of its samples
        mean_length = float(np.mean([s.n_tokens for s in pool]))
        out.append([_read(s, prompt, float(r), mean_length, length) for s, r in zip(pool, mine)])
    return out


def _read(sample: PoolSample, prompt: float, reading: float, mean_length: float, length: str) -> PoolSample:
    dtype = sample.p_correct.dtype
    p = np.full(sample.n_tokens, reading, dtype=dtype)  # [n_tokens]
    p[0] = prompt
    if length == "head":
        return replace(sample, p_correct=p)
    remaining = np.arange(sample.n_tokens, 0, -1).astype(sample.expected_remaining.dtype)  # [n_tokens] tokens left
    remaining[0] = mean_length
    return replace(sample, p_correct=p, expected_remaining=remaining)


def reordered(pools: list[list[PoolSample]], seed: int) -> list[list[PoolSample]]:
    """Each pool's samples in a seeded order (they are exchangeable draws of one question): the order in
    which majority@N and the samplers meet them. The readings travel with their samples."""
    rng = np.random.default_rng([seed, 1])  # independent of oracle_pools' stream at the same seed
    return [[pool[j] for j in rng.permutation(len(pool))] for pool in pools]


def reading_quality(pools: list[list[PoolSample]]) -> dict:
    """How well the pools' readings tell right samples from wrong: AUROC of the final reading (what best-of-N
    and the vote weights use) over all samples, its mean within the questions with both outcomes, and over
    every position (as `run_eval` scores a head), each with the oracle quality q = 2 AUROC - 1 it equals."""
    y = np.array([s.reward for pool in pools for s in pool])  # [n_samples]
    final = np.array([float(s.p_correct[-1]) for pool in pools for s in pool])  # [n_samples]
    question = np.repeat(np.arange(len(pools)), [len(pool) for pool in pools])  # [n_samples]
    everywhere = stats.auroc(np.concatenate([np.full(s.n_tokens, s.reward) for pool in pools for s in pool]),
                             np.concatenate([s.p_correct for pool in pools for s in pool]))
    within = within_problem_auroc(y, final, question, n_boot=200)
    out = {"auroc_final": stats.auroc(y, final), "auroc_within": within["estimate"], "n_mixed": within["n_mixed"],
           "auroc_all_positions": everywhere, "base_rate": float(y.mean()), "n_samples": int(len(y))}
    for key in ("final", "within", "all_positions"):
        out[f"q_{key}"] = 2 * out[f"auroc_{key}"] - 1
    return out

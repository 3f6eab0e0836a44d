"""Adaptive sampling from the head's joint (reward, remaining) prediction vs voting baselines.

Utility of a kept set S = E[best reward in S] - alpha * total tokens - beta * latency, with
E[best reward] = 1 - prod(1 - p_i) (samples treated as independent). At every checkpoint
(each `every` tokens) a running sample is pruned when its marginal utility is negative, and a
new one is started while the marginal utility of one more sample is positive.

Decisions depend only on prefixes, so the policy is evaluated by replaying pools of fully
generated samples: pruning at token t costs exactly the t tokens a live run would have spent.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from metalens.arithmetic import extract_answer
from probes.introspect.features import Positions, flatten
from probes.introspect.head import ReservedHead


@dataclass
class PoolSample:
    """One generated sample of a task: its answer, reward, and the head read at every prefix."""

    answer: int | None
    reward: int
    p_correct: np.ndarray  # [n_tokens]
    expected_remaining: np.ndarray  # [n_tokens]

    @property
    def n_tokens(self) -> int:
        return len(self.p_correct)


def build_pools(records: list[dict], positions: Positions, head: ReservedHead) -> list[list[PoolSample]]:
    """Per task in `positions`, its samples with the head's predictions at each prefix.

    `records` are all the rollout records, indexed like `positions.sample` (global sample ids).
    """
    probs = head.probs_from_hidden(positions.hidden)
    p, e = head.spec.p_correct(probs).numpy(), head.spec.expected_remaining(probs).numpy()
    rows, pools = flatten(records), {}
    for index in positions.sample.unique(sorted=True).tolist():
        row, sel = rows[index], (positions.sample == index).numpy()
        pools.setdefault(row["task_index"], []).append(
            PoolSample(extract_answer(row["text"]), row["reward"], p[sel], e[sel]))
    return [pools[k] for k in sorted(pools)]


def _vote(answers: list, weights: list[float] | None = None):
    weights = weights or [1.0] * len(answers)
    tally: Counter = Counter()
    for a, w in zip(answers, weights):
        if a is not None:
            tally[a] += w
    return tally.most_common(1)[0][0] if tally else None


def majority(pool: list[PoolSample], n: int) -> tuple[int, int]:
    """(correct, tokens) of majority voting over the first `n` samples."""
    used = pool[:n]
    answer = _vote([s.answer for s in used])
    correct = answer is not None and any(s.answer == answer and s.reward for s in used)
    return int(correct), sum(s.n_tokens for s in used)


def best_of_n(pool: list[PoolSample], n: int) -> tuple[int, int]:
    """(correct, tokens) of picking, among the first `n`, the sample the head rates highest at its end."""
    used = pool[:n]
    best = max(used, key=lambda s: s.p_correct[-1])
    return best.reward, sum(s.n_tokens for s in used)


def adaptive(pool: list[PoolSample], alpha: float, beta: float = 0.0, every: int = 4,
             initial: int = 1) -> tuple[int, int, int]:
    """(correct, tokens, latency in decode steps) of the adaptive policy on one task's pool."""
    progress = {i: 0 for i in range(min(initial, len(pool)))}  # running: tokens generated so far
    finished: list[int] = []
    next_new, tokens, steps = len(progress), 0, 0
    prior_p, prior_len = float(pool[0].p_correct[0]), float(pool[0].expected_remaining[0])

    def miss(indices, skip=None) -> float:  # P(no kept sample is correct), excluding `skip`
        out = 1.0
        for j in indices:
            if j != skip:
                s = pool[j]
                out *= 1 - float(s.p_correct[min(progress.get(j, s.n_tokens - 1), s.n_tokens - 1)])
        return out

    while progress:
        step = min(every, *(pool[i].n_tokens - t for i, t in progress.items()))
        for i in list(progress):
            progress[i] += step
            tokens += step
            if progress[i] >= pool[i].n_tokens:
                finished.append(i)
                del progress[i]
        steps += step
        kept = finished + list(progress)
        for i in list(progress):  # prune samples not worth their expected remaining cost
            s, t = pool[i], progress[i]
            others = [pool[j].expected_remaining[progress[j]] for j in progress if j != i] or [0.0]
            value = float(s.p_correct[t]) * miss(kept, skip=i)
            cost = alpha * float(s.expected_remaining[t]) + beta * max(0.0, float(s.expected_remaining[t]) - max(others))
            if value < cost:
                del progress[i]
                kept.remove(i)
        longest = max([float(pool[j].expected_remaining[progress[j]]) for j in progress] or [0.0])
        while next_new < len(pool) and prior_p * miss(kept) > alpha * prior_len + beta * max(0.0, prior_len - longest):
            progress[next_new] = 0
            kept.append(next_new)
            next_new += 1
    if not finished:
        return 0, tokens, steps
    weights = [float(pool[i].p_correct[-1]) for i in finished]
    answer = _vote([pool[i].answer for i in finished], weights)
    correct = answer is not None and any(pool[i].answer == answer and pool[i].reward for i in finished)
    return int(correct), tokens, steps


def pareto(pools: list[list[PoolSample]], alphas=None, beta: float = 0.0, every: int = 4) -> dict:
    """Accuracy vs mean tokens per task for majority@N, best-of-N (head) and the adaptive sampler."""
    n_max = min(len(p) for p in pools)
    alphas = alphas if alphas is not None else [0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]

    def curve(fn, params, label):
        points = []
        for param in params:
            results = np.array([fn(pool, param)[:2] for pool in pools], dtype=float)
            points.append({"method": label, "param": param, "accuracy": results[:, 0].mean(),
                           "tokens": results[:, 1].mean()})
        return points

    out = {"majority": curve(majority, range(1, n_max + 1), "majority@N"),
           "best_of_n": curve(best_of_n, range(1, n_max + 1), "best-of-N (head)"),
           "pass_at_n": [{"method": "pass@N (oracle)", "param": n,
                          "accuracy": float(np.mean([max(s.reward for s in p[:n]) for p in pools])),
                          "tokens": float(np.mean([sum(s.n_tokens for s in p[:n]) for p in pools]))}
                         for n in range(1, n_max + 1)],
           "adaptive": []}
    for initial in (1, 2):
        for alpha in alphas:
            r = np.array([adaptive(p[:n_max], alpha, beta, every, initial) for p in pools], dtype=float)
            out["adaptive"].append({"method": f"adaptive (start {initial})", "param": alpha, "initial": initial,
                                    "accuracy": r[:, 0].mean(), "tokens": r[:, 1].mean(), "latency": r[:, 2].mean()})
    out["matched"] = matched_cost(out["adaptive"], out["majority"])
    out["n_tasks"], out["pool_size"] = len(pools), n_max
    return out


def matched_cost(points: list[dict], baseline: list[dict]) -> list[dict]:
    """Each adaptive point next to the baseline's accuracy interpolated at the same mean tokens."""
    xs = np.array([b["tokens"] for b in baseline])
    ys = np.array([b["accuracy"] for b in baseline])
    order = np.argsort(xs)
    rows = []
    for pt in points:
        inside = xs.min() <= pt["tokens"] <= xs.max()
        base = float(np.interp(pt["tokens"], xs[order], ys[order])) if inside else float("nan")
        rows.append({"method": pt["method"], "alpha": pt["param"], "tokens": pt["tokens"], "accuracy": pt["accuracy"],
                     "majority_at_same_tokens": base, "difference": pt["accuracy"] - base})
    return rows

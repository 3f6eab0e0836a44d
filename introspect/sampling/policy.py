"""The adaptive sampler's decision rule at one checkpoint, shared by live generation and replay.

Utility of a kept set S = E[best reward in S] - alpha * total tokens - beta * latency, with
E[best reward] = 1 - prod(1 - p_i) (samples treated as independent). A running sample is pruned
when its marginal utility, P(it is the one that succeeds) minus the cost of its expected
remaining tokens (and of the decode steps it would add beyond the longest other sample), is
negative; new samples start while the marginal utility of one more, judged from the head's
reading at the prompt, is positive.
"""
from __future__ import annotations


def decide(
    running: dict[int, tuple[float, float]],
    finished: list[float],
    prior: tuple[float, float],
    alpha: float,
    beta: float = 0.0,
    can_start: int = 0,
) -> tuple[list[int], int]:
    """Which running samples to prune and how many new ones to start.

    running: sample id -> (P(correct), expected remaining tokens) read from the head at its
    current prefix, in start order; finished: P(correct) of finished samples at their last
    reading; prior: (P(correct), expected length) read at the prompt; can_start: samples left.
    """
    alive = dict(running)

    def miss(skip: int | None = None) -> float:  # P(no kept sample is correct), excluding `skip`
        out = 1.0
        for p in finished:
            out *= 1 - p
        for j, (p, _) in alive.items():
            if j != skip:
                out *= 1 - p
        return out

    pruned = []
    for i in list(alive):
        p, expected = alive[i]
        others = max([alive[j][1] for j in alive if j != i] or [0.0])
        if p * miss(skip=i) < alpha * expected + beta * max(0.0, expected - others):
            del alive[i]
            pruned.append(i)
    longest = max([e for _, e in alive.values()] or [0.0])
    p0, length0 = prior
    n_new, none_correct = 0, miss()
    while n_new < can_start and p0 * none_correct > alpha * length0 + beta * max(0.0, length0 - longest):
        n_new += 1
        none_correct *= 1 - p0
    return pruned, n_new

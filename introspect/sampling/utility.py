"""The utility of a set of samples read from the joint (reward x remaining length) head, and the
meta-action it picks: continue, stop a sample, start a new one, or branch one from a running prefix.

U(S) = E[max reward over S] - alpha x E[tokens S will still spend] - beta x E[decode steps until
the last of S ends] (the ZIP-RC sampling objective: expected best reward minus compute and latency).
Per running sample, the head's joint distribution p[r, l] at its current prefix gives the chance
that it ends within the token budget with reward state r (ending past the budget counts as reward
0) and its remaining-length distribution (bin lengths `BinSpec.bin_lengths`, capped at the
budget). Samples are treated as independent given their readings, so
E[max reward] = sum_s (v_s - v_{s-1}) (1 - prod_i P(r_i < v_s)) and
E[max remaining] = sum_k x_k (prod_i F_i(x_k) - prod_i F_i(x_{k-1})). They are not independent
(one prompt; a branch shares its parent's prefix, so the two are strongly correlated): the
independence makes branching and starting look more valuable than they are.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metalens.introspect.heads.bins import BinSpec


@dataclass(frozen=True)
class Reading:
    """A sample's joint distribution `joint` [R, L] at its prefix, after `used` generated tokens."""

    joint: np.ndarray
    used: int = 0


def outcome(reading: Reading, spec: BinSpec, budget: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(reward-state probabilities [R] counting an end past the budget as state 0, remaining-length
    values [L] capped at the tokens left, their probabilities [L])."""
    joint = np.asarray(reading.joint, float).reshape(spec.n_rewards, spec.n_lengths)
    left = max(budget - reading.used, 0)
    lengths = np.minimum(spec.bin_lengths().numpy().astype(float), left)
    within = spec.bin_lengths().numpy() <= left  # [L] bins that end inside the budget
    reward = (joint * within).sum(1)
    reward[0] += (joint * ~within).sum()
    return reward, lengths, joint.sum(0)


def expected_max_reward(rewards: list[np.ndarray], values: np.ndarray) -> float:
    """E[max_i reward_i] for independent samples with reward-state distributions `rewards` ([R] each)
    over state values `values` [R] (increasing); 0 for an empty set."""
    if not rewards:
        return 0.0
    cdf = np.cumsum(np.stack(rewards), axis=1)  # [n, R]: P(r_i <= state s)
    below = np.prod(cdf[:, :-1], axis=0)  # [R - 1]: P(all samples below state s + 1)
    return float(np.sum(np.diff(values) * (1 - below)))


def expected_max_length(lengths: list[np.ndarray], probs: list[np.ndarray]) -> float:
    """E[max_i remaining_i] for independent samples, each with remaining-length values and their
    probabilities; 0 for an empty set (the decode steps until the last one ends)."""
    if not lengths:
        return 0.0
    grid = np.unique(np.concatenate(lengths))  # sorted candidate values of the max
    cdf = np.ones_like(grid)
    for x, p in zip(lengths, probs):
        cdf = cdf * np.array([p[x <= g].sum() for g in grid])
    return float(np.sum(grid * np.diff(np.concatenate([[0.0], cdf]))))


def set_utility(running: list[Reading], finished: list[np.ndarray], spec: BinSpec, alpha: float, beta: float,
                budget: int) -> float:
    """U = E[max reward over running and finished] - alpha E[tokens left] - beta E[longest remaining].

    finished: reward-state distributions [R] of finished samples at their last reading.
    """
    parts = [outcome(r, spec, budget) for r in running]
    rewards = [p[0] for p in parts] + list(finished)
    tokens = sum(float(p[1] @ p[2]) for p in parts)
    latency = expected_max_length([p[1] for p in parts], [p[2] for p in parts])
    return expected_max_reward(rewards, spec.reward_values.numpy()) - alpha * tokens - beta * latency


def choose_actions(running: dict[int, Reading], finished: list[np.ndarray], prior: np.ndarray, spec: BinSpec,
                   alpha: float, beta: float, budget: int, can_start: int = 0,
                   branch: bool = True) -> list[tuple[str, int | None]]:
    """Greedy meta-actions at one checkpoint: repeatedly take the single action that raises the
    set's utility most, until none does. Actions: ("stop", id), ("start", None) a new sample from
    the prompt (reading `prior` [R, L]), ("branch", id) a new sample from running sample id's prefix
    (its reading and tokens used). Starts and branches together are capped by `can_start`;
    an empty list means continue."""
    current = dict(running)
    added: list[Reading] = []
    actions: list[tuple[str, int | None]] = []

    def value(members: list[Reading]) -> float:
        return set_utility(members, finished, spec, alpha, beta, budget)

    best = value(list(current.values()) + added)
    while True:
        options = []
        for i in current:
            options.append((("stop", i), [r for j, r in current.items() if j != i] + added))
        if len(added) < can_start:
            options.append((("start", None), list(current.values()) + added + [Reading(prior, 0)]))
            if branch:
                for i, r in running.items():  # branch from any sample running at this checkpoint
                    if i in current:
                        options.append((("branch", i), list(current.values()) + added + [r]))
        scored = [(value(members), action) for action, members in options]
        if not scored:
            return actions
        top, action = max(scored, key=lambda x: x[0])
        if top <= best + 1e-12:
            return actions
        best = top
        actions.append(action)
        if action[0] == "stop":
            del current[action[1]]
        else:
            added.append(Reading(prior, 0) if action[0] == "start" else running[action[1]])

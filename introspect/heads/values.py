"""Value labels: a second training stage on a first head's smoothed expected reward.

ZIP-RC's pipeline (rohinmanvi/ZIP-RC, docs/pipeline.md and `src/label_with_joint_value.py`):
train a first joint head on binary correctness, write each rollout's `value` = the mean of that
head's expected reward over the rollout's last K labelled positions (K = 64 in their smoke test,
512 by default), clipped to [0, 1], then train the final head on `value` binned into R = 7 reward
states (values 0, 1/6, ..., 1; edges at the midpoints) at every position of the rollout. The
value denoises the grader's 0/1: a rollout the first head read as likely right all along but
graded wrong gets a middling label instead of a hard 0.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from metalens.introspect.heads.bins import BinSpec
from metalens.introspect.heads.features import Positions

N_VALUE_STATES = 7  # ZIP-RC's reward states for value labels


def smoothed_values(expected: Tensor, sample: Tensor, window: int = 64) -> dict[int, float]:
    """Per sample, the mean of `expected` [n_pos] over its last `window` positions, clipped to [0, 1].

    `sample` [n_pos] gives each position's sample id; positions of a sample are in order.
    """
    if window < 1:
        raise ValueError(f"window={window}: average over at least the last position.")
    values = {}
    for sid in sample.unique(sorted=True).tolist():
        mine = expected[sample == sid]
        values[sid] = float(mine[-window:].float().mean().clamp(0.0, 1.0))
    return values


def value_relabel(positions: Positions, values: dict[int, float], spec: BinSpec) -> Positions:
    """`positions` with their joint bins relabelled: reward state = `spec.reward_state` of the
    sample's value, length bin as before. `reward` (the graded 0/1) is kept for evaluation."""
    value = torch.tensor([values[int(s)] for s in positions.sample])
    return dataclasses.replace(positions, bin=spec.joint_bin(spec.reward_state(value), positions.remaining))


def relabel_with_head(model, head, positions: Positions, spec: BinSpec,
                      window: int = 64) -> tuple[Positions, dict[int, float]]:
    """Read `head` (the first stage) on `positions`, smooth its expected reward per sample
    (`smoothed_values`) and relabel the positions into `spec`'s reward states."""
    expected = head.spec.expected_reward(head.probs_from_hidden(model, positions.hidden))
    values = smoothed_values(expected, positions.sample, window)
    return value_relabel(positions, values, spec), values

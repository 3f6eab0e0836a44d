"""The joint (reward, remaining-length) bins and the labels of every prefix of a rollout."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


def geometric_edges(n_bins: int = 8, base: int = 2) -> tuple[int, ...]:
    """Lower edges of `n_bins` length bins: 1, 2, 4, ... (the last bin is open-ended).

    Geometric because what matters for spending compute is the order of magnitude of the
    tokens left (3 vs 30), not the exact count; and short remainders need fine resolution.
    """
    return tuple(base**i for i in range(n_bins))


@dataclass(frozen=True)
class BinSpec:
    """R reward states x L remaining-length bins; joint bin = length_bin + reward_state * L.

    Reward state r stands for the reward value r / (R - 1): with R=2, 0 = incorrect and
    1 = correct; with R=7 (value labels, ZIP-RC's default) 0, 1/6, ..., 1. A value in [0, 1] falls
    in the state whose value is nearest (edges at the midpoints, as ZIP-RC's dataset bins them).
    The reserved tokens hold the R x L grid reward-major: token `start + r * L + l`.
    `edges[i]` is the least number of tokens remaining (this token included) in length bin i.
    """

    n_rewards: int = 2
    edges: tuple[int, ...] = field(default_factory=geometric_edges)

    def __post_init__(self):
        if self.n_rewards < 2:
            raise ValueError(f"n_rewards={self.n_rewards}: need at least 2 reward states (incorrect, correct).")
        if not self.edges or self.edges[0] != 1 or list(self.edges) != sorted(set(self.edges)):
            raise ValueError(f"edges={self.edges}: must start at 1 and strictly increase, e.g. (1, 2, 4, 8).")

    @property
    def n_lengths(self) -> int:
        return len(self.edges)

    @property
    def n_bins(self) -> int:
        """K = R x L, the number of reserved tokens the head needs."""
        return self.n_rewards * self.n_lengths

    @property
    def reward_values(self) -> Tensor:
        """[R] the reward value each state stands for: 0, 1/(R-1), ..., 1."""
        return torch.linspace(0.0, 1.0, self.n_rewards)

    def reward_state(self, value: Tensor | float) -> Tensor:
        """Reward state of values in [0, 1] (clipped): the nearest state value, ties to the upper state.

        With R=2 this maps 0 -> 0 and 1 -> 1 (binary correctness stays as it was).
        """
        value = torch.as_tensor(value, dtype=torch.float32).clamp(0.0, 1.0)
        values = self.reward_values.to(value.device)
        inner = (values[1:] + values[:-1]) / 2  # [R - 1] midpoints between neighbouring states
        return torch.bucketize(value, inner, right=True)

    def joint_index(self, state: Tensor | int, length_bin: Tensor | int) -> Tensor:
        """Joint bin of (reward state, length bin): length_bin + state * L."""
        return torch.as_tensor(length_bin) + torch.as_tensor(state).long() * self.n_lengths

    def split_index(self, joint: Tensor | int) -> tuple[Tensor, Tensor]:
        """(reward state, length bin) of a joint bin: the inverse of `joint_index`."""
        joint = torch.as_tensor(joint)
        return joint // self.n_lengths, joint % self.n_lengths

    def length_bin(self, remaining: Tensor | int) -> Tensor:
        """Length bin of `remaining` tokens left (>= 1), same shape."""
        remaining = torch.as_tensor(remaining)
        if (remaining < 1).any():
            raise ValueError("tokens remaining must be >= 1 (the token being predicted counts).")
        edges = torch.tensor(self.edges, device=remaining.device)
        return torch.bucketize(remaining, edges, right=True) - 1

    def joint_bin(self, reward: Tensor | int, remaining: Tensor | int) -> Tensor:
        """length_bin + reward_state * L."""
        reward = torch.as_tensor(reward)
        if ((reward < 0) | (reward >= self.n_rewards)).any():
            raise ValueError(f"reward states must be in 0..{self.n_rewards - 1}.")
        return self.length_bin(remaining) + reward.long() * self.n_lengths

    def bin_lengths(self) -> Tensor:
        """A representative remaining length per length bin [L]: the geometric middle of its range."""
        lo = torch.tensor(self.edges, dtype=torch.float32)
        hi = torch.cat([lo[1:] - 1, lo[-1:] * 2 - 1])  # the open last bin: as wide as doubling
        return (lo * hi).sqrt()

    def reward_marginal(self, probs: Tensor) -> Tensor:
        """[..., K] joint probabilities -> [..., R] reward-state probabilities."""
        return probs.unflatten(-1, (self.n_rewards, self.n_lengths)).sum(-1)

    def length_marginal(self, probs: Tensor) -> Tensor:
        """[..., K] joint probabilities -> [..., L] length-bin probabilities."""
        return probs.unflatten(-1, (self.n_rewards, self.n_lengths)).sum(-2)

    def p_correct(self, probs: Tensor) -> Tensor:
        """[..., K] -> [...] the expected reward: P(correct) when R=2 (the top state's probability,
        exactly), the mean of the state values under the reward marginal when R > 2 (value labels)."""
        marginal = self.reward_marginal(probs)
        if self.n_rewards == 2:
            return marginal[..., -1]
        return marginal @ self.reward_values.to(probs.device, marginal.dtype)

    def expected_reward(self, probs: Tensor) -> Tensor:
        """[..., K] -> [...] expected reward (the same as `p_correct`, named for R > 2)."""
        return self.p_correct(probs)

    def expected_remaining(self, probs: Tensor) -> Tensor:
        """[..., K] -> [...] expected tokens remaining under the head's length marginal."""
        return self.length_marginal(probs) @ self.bin_lengths().to(probs.device, probs.dtype)

    def to_dict(self) -> dict:
        return {"n_rewards": self.n_rewards, "edges": list(self.edges)}

    @classmethod
    def from_dict(cls, data: dict) -> "BinSpec":
        return cls(n_rewards=data["n_rewards"], edges=tuple(data["edges"]))


def fitted_edges(lengths, n_bins: int = 8) -> tuple[int, ...]:
    """Length-bin edges fitted to the response lengths seen: 1, then the quantiles of the
    remaining-length labels (every prefix of every response) at 1/n_bins, 2/n_bins, ..., kept
    distinct, so each bin holds about as many positions as the others (fewer if lengths repeat)."""
    import numpy as np

    lengths = [int(n) for n in lengths if n > 0]
    if not lengths:
        raise ValueError("No response lengths to fit length bins to: generate rollouts first.")
    remaining = np.concatenate([np.arange(1, n + 1) for n in lengths])
    cuts = np.quantile(remaining, np.arange(1, n_bins) / n_bins, method="higher").astype(int).tolist()
    return tuple(sorted({1, *(c for c in cuts if c > 1)}))


def prefix_labels(n_tokens: int, reward: int, spec: BinSpec) -> dict[str, Tensor]:
    """Labels of every prefix of a response of `n_tokens` tokens (end token included).

    Position t (0-based) is the state after t response tokens, read from the hidden state that
    predicts token t: it has `n_tokens - t` tokens left, and the final reward of the rollout.
    `reward` is a value in [0, 1] (graded 0/1, or a value label), put in `spec.reward_state`:
    with R=2 the state is the reward itself. Returns `remaining` [n_tokens], `reward` [n_tokens]
    (as given, integer when it is 0/1) and `bin` [n_tokens].
    """
    if n_tokens < 1:
        raise ValueError("A rollout needs at least one response token to be labelled.")
    remaining = torch.arange(n_tokens, 0, -1)
    if float(reward) not in (0.0, 1.0) and spec.n_rewards == 2:
        raise ValueError(f"reward {reward}: with 2 reward states a reward is 0 or 1; value labels need n_rewards > 2.")
    graded = float(reward) in (0.0, 1.0)
    rewards = torch.full((n_tokens,), int(reward) if graded else float(reward))
    states = spec.reward_state(rewards.float())
    return {"remaining": remaining, "reward": rewards, "bin": spec.joint_bin(states, remaining)}

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

    reward state 0 = incorrect, 1 = correct (R=2). `edges[i]` is the least number of tokens
    remaining (this token included) that falls in length bin i.
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
        """[..., K] -> [...] probability of the top reward state (correct)."""
        return self.reward_marginal(probs)[..., -1]

    def expected_remaining(self, probs: Tensor) -> Tensor:
        """[..., K] -> [...] expected tokens remaining under the head's length marginal."""
        return self.length_marginal(probs) @ self.bin_lengths().to(probs.device, probs.dtype)

    def to_dict(self) -> dict:
        return {"n_rewards": self.n_rewards, "edges": list(self.edges)}

    @classmethod
    def from_dict(cls, data: dict) -> "BinSpec":
        return cls(n_rewards=data["n_rewards"], edges=tuple(data["edges"]))


def prefix_labels(n_tokens: int, reward: int, spec: BinSpec) -> dict[str, Tensor]:
    """Labels of every prefix of a response of `n_tokens` tokens (end token included).

    Position t (0-based) is the state after t response tokens, read from the hidden state that
    predicts token t: it has `n_tokens - t` tokens left, and the final reward of the rollout.
    Returns `remaining` [n_tokens], `reward` [n_tokens] and `bin` [n_tokens].
    """
    if n_tokens < 1:
        raise ValueError("A rollout needs at least one response token to be labelled.")
    remaining = torch.arange(n_tokens, 0, -1)
    rewards = torch.full((n_tokens,), int(reward))
    return {"remaining": remaining, "reward": rewards, "bin": spec.joint_bin(rewards, remaining)}

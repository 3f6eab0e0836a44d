"""How far training moved the normal vocabulary: the price of modes `lora` and `full`.

Mode `head` leaves every normal-vocabulary logit bit-identical; the trained modes do not. At the
response positions of held-out rollouts, `Drift` sums, for the frozen and the trained model's
log-probabilities over the normal vocabulary (reserved tokens excluded): KL(frozen || trained), the
negative log-likelihood of the token the frozen model actually sampled under each, and how often
their top-1 tokens agree.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class Drift:
    """Running sums over positions; `add` a batch, `summary` the means."""

    kl: float = 0.0
    nll_frozen: float = 0.0
    nll_trained: float = 0.0
    top1_agree: float = 0.0
    n: int = 0
    n_scored: int = 0  # positions whose sampled token is a normal one (the NLLs' denominator)

    def add(self, frozen: Tensor, trained: Tensor, targets: Tensor) -> None:
        """`frozen`, `trained`: [n, vocab] log-probabilities (reserved at -inf or dropped); `targets`:
        [n] the sampled tokens' columns, -1 where the sampled token is a reserved one (the rollouts'
        model was free to sample it; it has no normal-vocabulary likelihood)."""
        finite = frozen.isfinite()
        self.kl += (frozen.exp() * (frozen - trained)).where(finite, frozen.new_zeros(())).sum().item()
        scored = targets >= 0
        column = targets.clamp(min=0)[:, None]
        self.nll_frozen -= frozen.gather(-1, column)[scored].sum().item()
        self.nll_trained -= trained.gather(-1, column)[scored].sum().item()
        self.top1_agree += (frozen.argmax(-1) == trained.argmax(-1)).sum().item()
        self.n += len(targets)
        self.n_scored += int(scored.sum())

    def summary(self) -> dict:
        """Per-position means: kl, nll_frozen, nll_trained (nats), top1_agreement; n_positions, n_scored."""
        n, scored = max(self.n, 1), max(self.n_scored, 1)
        return {"kl": self.kl / n, "nll_frozen": self.nll_frozen / scored, "nll_trained": self.nll_trained / scored,
                "top1_agreement": self.top1_agree / n, "n_positions": self.n, "n_scored": self.n_scored}

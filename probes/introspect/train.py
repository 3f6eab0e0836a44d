"""Training the reserved-logit head: mode `head` (reserved rows only) and mode `lora` (peft + KL)."""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from probes.introspect.bins import BinSpec
from probes.introspect.features import Positions
from probes.introspect.head import ReservedHead


def _softcap(model) -> float | None:
    return getattr(model.hf.config, "final_logit_softcapping", None)


def train_head(
    model,
    train: Positions,
    spec: BinSpec | None = None,
    steps: int = 300,
    lr: float = 1e-2,
    weight_decay: float = 1e-3,
    seed: int = 0,
    start: int | None = None,
) -> ReservedHead:
    """Mode `head`: fit only the K reserved unembedding rows by cross-entropy over the K bins.

    The rows start from the model's own (untrained) reserved rows. Nothing else in the model
    is touched, so every normal-vocabulary logit stays bit-identical; install the result with
    `head.install(model)` or `with head.applied(model):`.
    """
    head = ReservedHead.from_model(model, spec, start)
    torch.manual_seed(seed)
    hidden, target = train.hidden.float(), train.bin.long()
    weight = head.weight.clone().float().requires_grad_(True)  # [K, d_model]
    # Hidden states are large (gemma's final norm scales them): scale steps by their size.
    scale = hidden.norm(dim=-1).mean().item()
    opt = torch.optim.Adam([weight], lr=lr / max(scale, 1e-6))
    softcap = _softcap(model)
    losses = []
    for _ in range(steps):
        logits = hidden @ weight.T  # [n_pos, K]
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        loss = F.cross_entropy(logits, target) + weight_decay * (weight * scale).pow(2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    head.weight = weight.detach()
    head.metadata = {**head.metadata, "mode": "head", "steps": steps, "lr": lr, "seed": seed,
                     "final_loss": losses[-1], "n_train_positions": len(target)}
    return head


def shuffled(positions: Positions, spec: BinSpec, seed: int = 0) -> Positions:
    """The same positions with rewards permuted across samples (the no-signal baseline).

    Whole samples swap rewards, so each sample keeps one reward and lengths stay true.
    """
    gen = torch.Generator().manual_seed(seed)
    n = int(positions.sample.max()) + 1
    per_sample = torch.zeros(n, dtype=torch.long)
    per_sample[positions.sample] = positions.reward.long()
    reward = per_sample[torch.randperm(n, generator=gen)][positions.sample]
    return dataclasses.replace(positions, reward=reward, bin=spec.joint_bin(reward, positions.remaining))

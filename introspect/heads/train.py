"""Training the reserved-logit head: mode `head` (reserved rows only) and mode `lora` (peft + KL)."""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from metalens.introspect.heads.bins import BinSpec
from metalens.introspect.heads.features import Positions
from metalens.introspect.heads.head import ReservedHead


def train_head(
    model,
    train: Positions,
    spec: BinSpec | None = None,
    steps: int = 100,
    weight_decay: float = 1e-3,
    seed: int = 0,
    start: int | None = None,
) -> ReservedHead:
    """Mode `head`: fit only the K reserved unembedding rows by cross-entropy over the K bins.

    A multinomial logistic regression without intercept (unembedding rows have no bias), solved
    by L-BFGS for `steps` iterations in coordinates scaled by each hidden dimension's RMS, so
    gemma's few huge dimensions do not stall it; `weight_decay` penalises the scaled rows.
    Nothing else in the model is touched, so every normal-vocabulary logit stays bit-identical;
    install the result with `head.install(model)` or `with head.applied(model):`.
    """
    if len(train.bin) == 0:
        raise ValueError("No training positions: generate rollouts with non-empty responses first.")
    head = ReservedHead.from_model(model, spec, start)
    torch.manual_seed(seed)
    # Positions live on the CPU (stored); the fit runs where the head's rows are, the model's device.
    device = head.weight.device
    hidden, target = train.hidden.to(device).float(), train.bin.to(device).long()  # [n_pos, d_model], [n_pos]
    rms = hidden.pow(2).mean(0).sqrt().clamp_min(1e-6)  # [d_model]
    scaled = hidden / rms
    rows = (head.weight.float() * rms).requires_grad_(True)  # [K, d_model] in scaled coordinates
    opt = torch.optim.LBFGS([rows], lr=1, max_iter=steps, history_size=20, line_search_fn="strong_wolfe")
    losses = []

    def closure():
        opt.zero_grad()
        logits = model.softcap(scaled @ rows.T)  # [n_pos, K], capped as the model caps its own logits
        loss = F.cross_entropy(logits, target) + weight_decay * rows.pow(2).sum(-1).mean()
        loss.backward()
        losses.append(loss.item())
        return loss

    opt.step(closure)
    head.weight = (rows / rms).detach()
    head.metadata = {**head.metadata, "mode": "head", "solver": "lbfgs", "steps": steps, "weight_decay": weight_decay,
                     "seed": seed, "final_loss": losses[-1], "n_train_positions": len(target)}
    return head


def shuffled(positions: Positions, spec: BinSpec, seed: int = 0) -> Positions:
    """The same positions with rewards permuted across samples (the no-signal baseline).

    Whole samples swap rewards, so each sample keeps one reward and lengths stay true.
    """
    gen = torch.Generator().manual_seed(seed)
    # Permute among the samples present: ids of a subset are not contiguous (a training fold).
    samples, which = positions.sample.unique(sorted=True, return_inverse=True)
    per_sample = torch.zeros(len(samples), dtype=torch.long)
    per_sample[which] = positions.reward.long()
    reward = per_sample[torch.randperm(len(samples), generator=gen)][which]
    return dataclasses.replace(positions, reward=reward,
                               bin=spec.joint_bin(spec.reward_state(reward.float()), positions.remaining))

"""Mode `full`: the whole model trained on the reserved slice, kept close to itself by a sparse KL.

As ZIP-RC trains it (rohinmanvi/ZIP-RC, `src/train_ziprc_joint_head.py`): loss = cross-entropy of
the K reserved logits against the joint (reward, remaining-length) bin + `kl_coef` x
KL(frozen || model) over the normal vocabulary, where the frozen distribution is truncated to its
top `top_k` = 32 tokens and renormalised, and the model's log-probabilities are taken over the
whole normal vocabulary (reserved tokens excluded from its normaliser). AdamW with betas
(0.9, 0.95), linear warmup then cosine decay to `min_lr`, gradient clipping, gradient accumulation.

The frozen model's top-k is precomputed once per rollout position before training (`teacher_topk`),
instead of keeping a second copy of the model and running it at every step: the rollouts are
fixed, so the frozen logits are too; it saves one forward per step and a model's worth of memory,
for 2 x 32 numbers per position. The model is handed back unchanged: its parameters are
snapshotted before training and restored after (also when training raises); the trained
parameters come back as `FullWeights`, applied for a block with `weights_applied`.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from metalens.artifact import read_artifact, write_artifact
from metalens.introspect.heads.bins import BinSpec
from metalens.introspect.heads.drift import Drift
from metalens.introspect.heads.features import final_states
from metalens.introspect.heads.head import ReservedHead


@dataclass
class FullConfig:
    """Optimiser settings of mode `full` (ZIP-RC's: AdamW (0.9, 0.95), warmup + cosine, clip 1.0)."""

    steps: int = 100  # optimiser steps (each `accum` micro-batches of `batch_size` samples)
    lr: float = 1e-5
    kl_coef: float = 10.0
    warmup: int = 5  # steps of linear warmup
    accum: int = 4  # micro-batches per optimiser step
    batch_size: int = 4  # samples per micro-batch
    grad_clip: float = 1.0
    weight_decay: float = 0.0
    min_lr: float = 0.0
    top_k: int = 32  # frozen-model tokens kept for the KL (renormalised)
    monitor_every: int = 5  # steps between readings of the monitor rows' CE (with `monitor` given)
    seed: int = 0


def lr_at(step: int, lr: float, warmup: int, total: int, min_lr: float = 0.0) -> float:
    """Learning rate of optimiser step `step` (0-based): linear warmup over `warmup` steps
    (lr x (step + 1) / warmup), then cosine decay from `lr` to `min_lr` at the last step."""
    if step < warmup:
        return lr * (step + 1) / warmup
    span = max(total - warmup - 1, 1)
    progress = min((step - warmup) / span, 1.0)
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (lr - min_lr)


@dataclass
class Teacher:
    """The frozen model's top-k next tokens at every response position of some samples."""

    ids: list[Tensor]  # per sample [n_tokens, k] token ids
    logp: list[Tensor]  # per sample [n_tokens, k] log-probabilities renormalised over the k


def response_batch(model, rows: list[dict]):
    """(ids, mask, where) of `features.flatten` rows, right-padded: `final_states(model, ids, mask)[where]`
    is [n_resp, d_model], the states predicting every response token of every row, in order."""
    ids, mask = model.pad([r["prompt_ids"] + r["completion"][:-1] for r in rows], side="right")
    select = [(j, len(r["prompt_ids"]) - 1 + t) for j, r in enumerate(rows) for t in range(len(r["completion"]))]
    return ids, mask, tuple(torch.tensor(x, device=model.device) for x in zip(*select))


def _logits(model, hidden: Tensor, reserved: range) -> Tensor:
    """[n, vocab] softcapped logits with the reserved tokens at -inf (the normal vocabulary)."""
    logits = model.unembed(hidden, slice(None))  # every row, in float32
    return logits.index_fill(-1, torch.arange(reserved.start, reserved.stop, device=logits.device), float("-inf"))


@torch.no_grad()
def teacher_topk(model, rows: list[dict], reserved: range, k: int = 32, batch_size: int = 8,
                 progress: bool = False) -> Teacher:
    """The frozen model's top-`k` normal-vocabulary tokens and their renormalised log-probabilities
    at every response position of `rows` (`features.flatten` rows)."""
    k = min(k, model.d_vocab - len(reserved))  # k >= the normal vocabulary: the exact KL
    ids_out, logp_out = [], []
    batches = range(0, len(rows), batch_size)
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc="frozen top-k")
    for i in batches:
        chunk = rows[i : i + batch_size]
        ids, mask, where = response_batch(model, chunk)
        values, index = _logits(model, final_states(model, ids, mask)[where], reserved).topk(k, dim=-1)  # [n, k]
        logp = values.log_softmax(-1)
        for part_ids, part_logp in zip(index.split([len(r["completion"]) for r in chunk]),
                                       logp.split([len(r["completion"]) for r in chunk])):
            ids_out.append(part_ids.cpu())
            logp_out.append(part_logp.cpu())
    return Teacher(ids_out, logp_out)


def sparse_kl(logits: Tensor, teacher_ids: Tensor, teacher_logp: Tensor) -> Tensor:
    """Mean over positions of KL(P_topk || Q): P the frozen top-k renormalised, Q the model's
    distribution over the whole normal vocabulary (`logits` [n, vocab], reserved at -inf)."""
    log_q = logits.gather(-1, teacher_ids) - logits.logsumexp(-1, keepdim=True)  # [n, k]
    return (teacher_logp.exp() * (teacher_logp - log_q)).sum(-1).mean()


@dataclass
class FullWeights:
    """Every parameter of a model trained in mode `full` (tied weights once), held until `save`."""

    tensors: dict[str, Tensor]
    metadata: dict = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        """Write `weights.safetensors` + `weights.json` into directory `path`."""
        return write_artifact(path, "weights", self.tensors, self.metadata)

    @classmethod
    def load(cls, path: str | Path) -> "FullWeights":
        """The weights `save` wrote."""
        tensors, meta = read_artifact(path, "weights", "train a head with `--mode full` first.")
        return cls(tensors, meta)


def snapshot(model) -> dict[str, Tensor]:
    """A copy of every parameter of `model` by name (`load_parameters` puts it back)."""
    return {name: p.detach().clone() for name, p in model.hf.named_parameters()}


@torch.no_grad()
def load_parameters(model, tensors: dict[str, Tensor]) -> None:
    """Copy `tensors` (parameter name -> value) into `model`'s parameters, in place."""
    params = dict(model.hf.named_parameters())
    missing = set(tensors) - set(params)
    if missing:
        raise ValueError(f"These weights do not fit {model.name}: no parameters {sorted(missing)[:3]} ...")
    wrong = [n for n, v in tensors.items() if v.shape != params[n].shape]
    if wrong:
        raise ValueError(f"These weights do not fit {model.name}: {wrong[0]} is {list(tensors[wrong[0]].shape)}, the "
                         f"model's is {list(params[wrong[0]].shape)}; they belong to another model.")
    for name, value in tensors.items():
        params[name].copy_(value.to(params[name].device, params[name].dtype))


@contextlib.contextmanager
def weights_applied(model, weights: FullWeights):
    """Load full-mode weights into `model` for the block; the original parameters come back on exit."""
    saved = {name: p.detach().clone() for name, p in model.hf.named_parameters() if name in weights.tensors}
    try:
        load_parameters(model, weights.tensors)
        yield model
    finally:
        load_parameters(model, saved)


def train_full(model, rows: list[dict], labels: list[Tensor], spec: BinSpec, config: FullConfig | None = None,
               init: ReservedHead | None = None, teacher: Teacher | None = None,
               monitor: tuple[list[dict], list[Tensor]] | None = None,
               progress: bool = False) -> tuple[ReservedHead, FullWeights, list[dict]]:
    """Train every parameter of `model` on `rows` (`features.flatten` rows) and their per-position
    joint-bin `labels` (one [n_tokens] tensor per row); returns (head, weights, history).

    `init`: start the reserved rows from a head (e.g. mode `head`'s fit). `teacher`: the frozen
    top-k of these rows (computed here when not given and `kl_coef` > 0). `monitor`: (rows, labels)
    of other samples whose reserved-slice cross-entropy is read before the first step and every
    `monitor_every` steps (`monitor_ce` in the history): a held-out curve, for reading, not for
    choosing the step count. The model comes back with its original parameters (also when
    training raises).
    """
    config = config or FullConfig()
    if len(rows) != len(labels) or not rows:
        raise ValueError(f"Need one label tensor per sample and at least one sample ({len(rows)} rows, "
                         f"{len(labels)} labels).")
    head = ReservedHead.from_model(model, spec, None if init is None else init.start)
    reserved = head.token_ids
    if config.kl_coef > 0 and teacher is None:
        teacher = teacher_topk(model, rows, reserved, config.top_k, progress=progress)
    original = snapshot(model)
    was_training = model.hf.training
    grads = {name: p.requires_grad for name, p in model.hf.named_parameters()}
    try:
        if init is not None:
            init.install(model)
        history = _fit(model, rows, labels, reserved, teacher, config, monitor, progress)
        # a copy: on a CPU fp32 model .float().cpu() is a view, which the restore below would overwrite
        head.weight = ReservedHead.from_model(model, spec, reserved.start).weight.cpu()
        trained = {name: p.detach().cpu().clone() for name, p in model.hf.named_parameters()}
    finally:
        load_parameters(model, original)
        model.hf.zero_grad(set_to_none=True)
        model.hf.train(was_training)
        for name, p in model.hf.named_parameters():
            p.requires_grad_(grads[name])
    meta = {"mode": "full", **asdict(config), "init": "given head" if init is not None else "model rows",
            "teacher": f"frozen top-{config.top_k}, renormalised, precomputed per rollout position"}
    head.metadata = {**head.metadata, **meta}
    return head, FullWeights(trained, {**model.metadata(), **meta}), history


def _reserved_ce(model, rows: list[dict], labels: list[Tensor], reserved: range, batch_size: int = 8) -> float:
    """Mean cross-entropy of the reserved slice against `labels` over every position of `rows`."""
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(rows), batch_size):
            ids, mask, where = response_batch(model, rows[i : i + batch_size])
            logits = model.unembed(final_states(model, ids, mask)[where], reserved)
            bins = torch.cat(labels[i : i + batch_size]).to(model.device)
            total += F.cross_entropy(logits, bins, reduction="sum").item()
            count += len(bins)
    return total / max(count, 1)


def _fit(model, rows, labels, reserved: range, teacher: Teacher | None, config: FullConfig, monitor,
         progress) -> list[dict]:
    """The optimisation loop of `train_full`; returns per-step {step, lr, ce, kl, grad_norm} (and
    `monitor_ce`, the monitor rows' CE after the step, every `monitor_every` steps and at the last;
    step -1 is the start)."""
    params = [p for p in model.hf.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=config.lr, betas=(0.9, 0.95), weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(config.seed)
    model.hf.train()
    history, order, cursor = [], [], 0

    def read_monitor() -> float:
        model.hf.eval()
        value = _reserved_ce(model, *monitor, reserved)
        model.hf.train()
        return value

    if monitor is not None:
        history.append({"step": -1, "monitor_ce": read_monitor()})
    steps = range(config.steps)
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc="full-model steps")
    for step in steps:
        lr = lr_at(step, config.lr, config.warmup, config.steps, config.min_lr)
        for group in opt.param_groups:
            group["lr"] = lr
        ce_sum = kl_sum = 0.0
        for _ in range(config.accum):
            if cursor + config.batch_size > len(order):  # epochs of a fresh permutation
                order, cursor = order[cursor:] + torch.randperm(len(rows), generator=gen).tolist(), 0
            pick = order[cursor : cursor + config.batch_size]
            cursor += config.batch_size
            ids, mask, where = response_batch(model, [rows[i] for i in pick])
            hidden = final_states(model, ids, mask)[where]  # [n_resp, d_model]
            bins = torch.cat([labels[i] for i in pick]).to(model.device)
            ce = F.cross_entropy(model.unembed(hidden, reserved), bins)
            loss = ce
            if config.kl_coef > 0:
                top_ids = torch.cat([teacher.ids[i] for i in pick]).to(model.device)  # [n_resp, k]
                top_logp = torch.cat([teacher.logp[i] for i in pick]).to(model.device)
                kl = sparse_kl(_logits(model, hidden, reserved), top_ids, top_logp)
                loss = loss + config.kl_coef * kl
                kl_sum += kl.item()
            (loss / config.accum).backward()
            ce_sum += ce.item()
        norm = torch.nn.utils.clip_grad_norm_(params, config.grad_clip) if config.grad_clip else torch.tensor(0.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        history.append({"step": step, "lr": lr, "ce": ce_sum / config.accum, "kl": kl_sum / config.accum,
                        "grad_norm": float(norm)})
        if monitor is not None and ((step + 1) % config.monitor_every == 0 or step == config.steps - 1):
            history[-1]["monitor_ce"] = read_monitor()
    return history


@torch.no_grad()
def measure_drift(model, weights: FullWeights, rows: list[dict], reserved: range, batch_size: int = 8) -> dict:
    """`drift.Drift` summary (KL(frozen || trained), NLL of the sampled tokens under each, top-1
    agreement) over the normal vocabulary at the response positions of `rows`: `model` as given is
    the frozen one, `weights` the trained one (loaded per batch)."""
    drift = Drift()
    for i in range(0, len(rows), batch_size):
        chunk = rows[i : i + batch_size]
        ids, mask, where = response_batch(model, chunk)
        ref = _logits(model, final_states(model, ids, mask)[where], reserved).log_softmax(-1)
        with weights_applied(model, weights):
            new = _logits(model, final_states(model, ids, mask)[where], reserved).log_softmax(-1)
        targets = torch.tensor([t for r in chunk for t in r["completion"]], device=ref.device)
        drift.add(ref, new, targets.where((targets < reserved.start) | (targets >= reserved.stop), -1))
    return drift.summary()


def measure_kl(model, weights: FullWeights, rows: list[dict], reserved: range, batch_size: int = 8) -> float:
    """Mean KL(frozen || trained) over the whole normal vocabulary at the response positions of `rows`."""
    return measure_drift(model, weights, rows, reserved, batch_size)["kl"]

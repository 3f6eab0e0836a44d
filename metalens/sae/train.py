"""`train_sae`: a small sparse autoencoder on activations captured from a model, resumable.

Activations come from `metalens.capture(positions="all")` (BOS dropped: the attention sink's
norm is far outside the rest) and are scaled so their mean norm is sqrt(d_in), the scale
folded back into the weights at the end (Anthropic's April 2024 update, as SAELens does).
Losses: ReLU with a decoder-norm-weighted L1 penalty; TopK (Gao et al. 2024) with MSE alone;
JumpReLU (Rajamanoharan et al. 2024) with an L0 penalty through straight-through estimators.
Checkpoints are safetensors + JSON; a resumed run equals an uninterrupted one.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm.auto import tqdm

from metalens.artifact import read_json
from metalens.capture import capture
from metalens.sae.dictionary import ARCHITECTURES, SAE
from metalens.sae.formats import load_sae, save_saelens

CHECKPOINT = "checkpoint.safetensors"
RUN_JSON = "run.json"  # what the checkpoint belongs to, written once
TRAIN_JSON = "training.json"  # the finished result's record
# Keys a resumed run may change: training longer, or checkpointing at another pace.
RESUMABLE = ("steps", "checkpoint_every")


@dataclass
class SAETrainConfig:
    """What to train: where, how wide, which architecture, and the optimiser's settings."""

    site: str
    width: int = 1024  # d_sae
    architecture: str = "topk"
    k: int = 32  # TopK: active features per token
    l1_coefficient: float = 1.0  # standard: weight of sum_i f_i |W_dec_i|
    l0_coefficient: float = 1.0  # JumpReLU: weight of the (straight-through) L0
    init_threshold: float = 0.01  # JumpReLU, in scaled units
    bandwidth: float = 0.05  # JumpReLU: width of the threshold's gradient kernel
    lr: float = 4e-4
    batch_size: int = 1024  # tokens per step
    steps: int = 1000
    seed: int = 0
    max_length: int | None = 128
    text_batch_size: int = 16
    checkpoint_every: int = 100
    # "mean": start b_dec at the activations' mean, so the encoder first sees centred inputs; from zero,
    # a residual stream's large shared direction lets the same few TopK features win every token.
    init_b_dec: str = "zeros"

    def check(self) -> None:
        """Refuse settings that cannot train (ValueError naming the field)."""
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture {self.architecture!r}: use one of {list(ARCHITECTURES)}.")
        for name in ("width", "batch_size", "steps", "text_batch_size", "checkpoint_every", "k"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}.")
        for name in ("lr", "init_threshold", "bandwidth"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, not {getattr(self, name)!r}.")
        for name in ("l1_coefficient", "l0_coefficient"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, not {getattr(self, name)!r}.")
        if self.init_b_dec not in ("zeros", "mean"):
            raise ValueError(f"init_b_dec {self.init_b_dec!r}: use 'zeros' or 'mean'.")
        if self.architecture == "topk" and self.k > self.width:
            raise ValueError(f"k ({self.k}) cannot exceed width ({self.width}).")


@dataclass
class SAETraining:
    """A trained dictionary with its loss per step and the settings that made it."""

    sae: SAE
    losses: list[float]
    config: SAETrainConfig
    scale: float  # the input scale used in training, already folded into `sae`
    metadata: dict = field(default_factory=dict)

    def save(self, path) -> Path:
        """`path/sae/` (SAELens layout) and `path/training.json`; returns `path`."""
        path = Path(path)
        save_saelens(self.sae, path / "sae")
        record = {"config": asdict(self.config), "losses": self.losses, "scale": self.scale, **self.metadata}
        _atomic_write_text(path / TRAIN_JSON, json.dumps(record, indent=2))
        return path

    @classmethod
    def load(cls, path) -> "SAETraining":
        """Read what `save` wrote."""
        path = Path(path)
        record = read_json(path / TRAIN_JSON, "SAE training record")
        config = SAETrainConfig(**record.pop("config"))
        return cls(load_sae(path / "sae"), record.pop("losses"), config, record.pop("scale"), record)


class _JumpReLU(torch.autograd.Function):
    """z * H(z - t), with the threshold's gradient through a rectangle kernel of width `bandwidth`."""

    @staticmethod
    def forward(ctx, pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return pre * (pre > threshold)

    @staticmethod
    def backward(ctx, grad: Tensor):
        pre, threshold = ctx.saved_tensors
        near = ((pre - threshold).abs() < ctx.bandwidth / 2).to(pre.dtype)
        grad_t = (-(threshold / ctx.bandwidth) * near * grad).reshape(-1, pre.shape[-1]).sum(0)
        return (pre > threshold) * grad, grad_t, None


class _Step(torch.autograd.Function):
    """H(z - t), whose gradient reaches only the threshold (the L0 penalty's estimator)."""

    @staticmethod
    def forward(ctx, pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return (pre > threshold).to(pre.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        pre, threshold = ctx.saved_tensors
        near = ((pre - threshold).abs() < ctx.bandwidth / 2).to(pre.dtype)
        grad_t = (-(1.0 / ctx.bandwidth) * near * grad).reshape(-1, pre.shape[-1]).sum(0)
        return torch.zeros_like(pre), grad_t, None


def _loss(params: dict[str, Tensor], x: Tensor, config: SAETrainConfig) -> Tensor:
    """Reconstruction (squared error summed over d_in, mean over tokens) plus the sparsity penalty; x [n, d_in]."""
    pre = (x - params["b_dec"]) @ params["W_enc"] + params["b_enc"]  # [n, d_sae]
    penalty = x.new_zeros(())
    if config.architecture == "topk":
        top = pre.topk(config.k, dim=-1)
        f = torch.zeros_like(pre).scatter(-1, top.indices, torch.relu(top.values))
    elif config.architecture == "jumprelu":
        threshold = params["log_threshold"].exp()
        f = _JumpReLU.apply(pre, threshold, config.bandwidth)
        penalty = config.l0_coefficient * _Step.apply(pre, threshold, config.bandwidth).sum(-1).mean()
    else:
        f = torch.relu(pre)
        penalty = config.l1_coefficient * (f * params["W_dec"].norm(dim=-1)).sum(-1).mean()
    x_hat = f @ params["W_dec"] + params["b_dec"]  # [n, d_in]
    return (x_hat - x).pow(2).sum(-1).mean() + penalty


def _init_params(d_in: int, config: SAETrainConfig) -> dict[str, Tensor]:
    gen = torch.Generator().manual_seed(config.seed)
    W_dec = torch.randn(config.width, d_in, generator=gen)
    # Short rows for the L1 variant (its penalty weighs by row norm), unit rows for the constrained ones.
    W_dec = (0.1 if config.architecture == "standard" else 1.0) * W_dec / W_dec.norm(dim=-1, keepdim=True)  # [d_sae, d_in]
    params = {"W_enc": W_dec.T.clone(), "W_dec": W_dec, "b_enc": torch.zeros(config.width),
              "b_dec": torch.zeros(d_in)}
    if config.architecture == "jumprelu":
        params["log_threshold"] = torch.full((config.width,), math.log(config.init_threshold))
    return {k: v.requires_grad_() for k, v in params.items()}


def _batch_indices(step: int, n: int, batch_size: int, seed: int) -> Tensor:
    """Token rows for `step`: a fresh seeded permutation per epoch, so any step is recomputable."""
    per_epoch = max(n // batch_size, 1)
    epoch, j = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    return perm[j * batch_size:(j + 1) * batch_size]


def _activations(model, texts: list[str], config: SAETrainConfig, progress: bool) -> Tensor:
    """[n_tokens, d_in] float32 activations at the site, each text's BOS dropped."""
    acts = capture(model, texts, [config.site], positions="all", batch_size=config.text_batch_size,
                   max_length=config.max_length, dtype=torch.float32, progress=progress)
    skip = 1 if model.tokenizer.bos_token_id is not None else 0
    rows = [t[skip:].reshape(t.shape[0] - skip, -1) for t in acts.split(config.site)]
    data = torch.cat(rows)
    if data.shape[0] < 1:
        raise ValueError("The texts give no tokens past BOS to train on: pass longer or more texts.")
    return data


def _texts_sha256(texts: list[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode() + b"\0")
    return digest.hexdigest()


def _atomic_write_text(file: Path, text: str) -> None:
    tmp = file.with_suffix(file.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, file)


def _save_checkpoint(out: Path, step: int, params, opt, losses: list[float], scale: float) -> None:
    tensors = {f"param/{k}": v.detach() for k, v in params.items()}
    for i, name in enumerate(params):
        state = opt.state.get(opt.param_groups[0]["params"][i], {})
        for key, value in state.items():
            tensors[f"adam/{name}/{key}"] = value.detach().reshape(-1) if value.dim() == 0 else value.detach()
    tensors["losses"] = torch.tensor(losses, dtype=torch.float64)
    tensors["scale"] = torch.tensor([scale], dtype=torch.float64)
    tmp = out / (CHECKPOINT + ".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata={"step": str(step)})
    os.replace(tmp, out / CHECKPOINT)  # one file, replaced whole: a crash leaves the previous checkpoint


def _resume(out: Path, record: dict, params, opt) -> tuple[int, list[float], float]:
    """(step, losses, scale) from a checkpoint in `out` made by the same run; (0, [], 0) when none."""
    file = out / CHECKPOINT
    if not file.exists():
        return 0, [], 0.0
    old = read_json(out / RUN_JSON, "SAE training run record")
    differ = sorted(k for k in set(old) | set(record)
                    if k != "config" and old.get(k) != record.get(k))
    differ += sorted(f"config.{k}" for k in record["config"]
                     if k not in RESUMABLE and old.get("config", {}).get(k) != record["config"][k])
    if differ:
        raise ValueError(f"{out} holds a checkpoint of another run (differs in {differ}): pass another --out, "
                         "or delete the folder to start over.")
    from safetensors import safe_open

    with safe_open(str(file), "pt") as handle:
        step = int(handle.metadata()["step"])
    tensors = load_file(str(file))
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(tensors[f"param/{name}"])
    for i, name in enumerate(params):
        state = {key.split("/")[-1]: v for key, v in tensors.items() if key.startswith(f"adam/{name}/")}
        if state:
            if "step" in state:
                state["step"] = state["step"].reshape(())
            opt.state[opt.param_groups[0]["params"][i]] = state
    return step, tensors["losses"].tolist(), float(tensors["scale"][0])


def _fold(params: dict[str, Tensor], scale: float, config: SAETrainConfig, model, d_in: int) -> SAE:
    """The SAE on raw activations: training saw x * scale, so W_enc * scale, W_dec / scale, b_dec / scale."""
    p = {k: v.detach().clone() for k, v in params.items()}
    threshold = p.pop("log_threshold").exp() if "log_threshold" in p else None
    return SAE(
        W_enc=p["W_enc"] * scale, W_dec=p["W_dec"] / scale, b_enc=p["b_enc"], b_dec=p["b_dec"] / scale,
        architecture=config.architecture, site=config.site, model=model.name,
        k=config.k if config.architecture == "topk" else None, threshold=threshold, apply_b_dec_to_input=True,
        metadata={"trained_by": "metalens", "revision": getattr(model, "revision", None)},
    )


def train_sae(model, texts, config: SAETrainConfig, *, out=None, progress: bool = True) -> SAETraining:
    """Train `config.architecture` on activations at `config.site` over `texts`; see `SAETrainConfig`.

    out: a folder for `checkpoint.safetensors` (every `checkpoint_every` steps) and `run.json`;
    a rerun with the same settings resumes from the checkpoint (raising `steps` extends a run),
    one with other settings is refused. The result is saved there too (`SAETraining.save`).
    """
    config.check()
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        raise ValueError("No texts to train on: pass a non-empty list of strings.")
    data = _activations(model, texts, config, progress)  # [n_tokens, d_in]
    d_in = data.shape[1]
    params = _init_params(d_in, config)
    opt = torch.optim.Adam(list(params.values()), lr=config.lr)
    record = {"config": asdict(config), "model": model.name, "n_texts": len(texts),
              "texts_sha256": _texts_sha256(texts), "n_tokens": data.shape[0]}
    step, losses, scale = 0, [], 0.0
    if out is not None:
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out} is a file: pass a folder.")
        out.mkdir(parents=True, exist_ok=True)
        step, losses, scale = _resume(out, record, params, opt)
    if step == 0:
        scale = float(d_in**0.5 / data.norm(dim=-1).mean())
        if config.init_b_dec == "mean":
            with torch.no_grad():
                params["b_dec"].copy_(data.mean(0) * scale)
    bar = tqdm(total=config.steps, initial=min(step, config.steps), desc=f"train SAE {config.site}",
               unit="step", disable=not progress)
    # A fresh start (re)writes the record, so a stale one from a run that never checkpointed cannot linger.
    first_write = out is not None and step == 0
    while step < config.steps:
        x = data[_batch_indices(step, data.shape[0], config.batch_size, config.seed)] * scale
        loss = _loss(params, x, config)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"The loss became {loss.item()} at step {step}: lower lr (now {config.lr}).")
        opt.zero_grad()
        loss.backward()
        opt.step()
        if config.architecture != "standard":  # unit-norm decoder rows; the L1 variant weights by the norm instead
            with torch.no_grad():
                params["W_dec"].div_(params["W_dec"].norm(dim=-1, keepdim=True).clamp(min=1e-8))
        losses.append(loss.item())
        step += 1
        bar.update()
        bar.set_postfix(loss=f"{losses[-1]:.3g}")
        if out is not None and (step % config.checkpoint_every == 0 or step == config.steps):
            if first_write:  # the record is written once the first unit of work has succeeded
                _atomic_write_text(out / RUN_JSON, json.dumps(record, indent=2))
                first_write = False
            _save_checkpoint(out, step, params, opt, losses, scale)
    bar.close()
    meta = {k: v for k, v in record.items() if k != "config"}
    result = SAETraining(_fold(params, scale, config, model, d_in), losses, config, scale, meta)
    if out is not None:
        result.save(out)
    return result


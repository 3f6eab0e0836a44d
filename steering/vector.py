"""`SteeringVector`: per-layer directions added to the residual stream, and how to train one."""
from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor

import metalens

METHODS = ("mean_diff", "pca")


def site_of(layer: int) -> str:
    """The hook site a vector for block `layer` is read from and added to."""
    return f"blocks.{layer}.hook_resid_post"


def check_strength(strength) -> float:
    """Return `strength` as a float, or raise if it is not a finite number."""
    try:
        value = float(strength)
    except (TypeError, ValueError):
        raise TypeError(f"strength must be a number, not {strength!r}.") from None
    if not math.isfinite(value):
        raise ValueError(f"strength must be finite, not {value}: pass e.g. strength=4.0.")
    return value


@dataclass
class SteeringVector:
    """Directions `{layer: [d_model]}` in the residual stream after each block, with provenance.

    For `mean_diff`, a direction is mean(positive) - mean(negative) of the activations (over
    each text's tokens for positions="mean", at its last token for "last"), so strength 1
    moves the average negative example onto the positive mean. `pca` directions are rescaled
    to the mean-difference norm, so strengths are comparable across methods.
    """

    directions: dict[int, Float[Tensor, "d_model"]]
    model_name: str
    d_model: int
    method: str = "mean_diff"
    positions: str = "mean"
    revision: str = "main"
    seed: int = 0
    n_pairs: int = 0
    metadata: dict = field(default_factory=dict)

    @property
    def layers(self) -> list[int]:
        """The layers this vector steers, ascending."""
        return sorted(self.directions)

    def check_model(self, model) -> None:
        """Raise if this vector cannot be applied to `model` (other model, size or layer)."""
        if self.d_model != model.d_model:
            raise ValueError(
                f"This steering vector has d_model {self.d_model} (trained on '{self.model_name}') but "
                f"{model.name} has d_model {model.d_model}: train a vector on this model with metalens.steering.train."
            )
        if self.model_name != model.name:
            raise ValueError(
                f"This steering vector was trained on '{self.model_name}', not '{model.name}': directions "
                "do not transfer between models. Train one on this model with metalens.steering.train."
            )
        for layer in self.layers:
            model.check_layer(layer)

    def hook_fns(self, model, strength: float, prompt: bool = True) -> dict:
        """`{site: fn}` for `metalens.hooks` adding strength * direction at each layer.

        With prompt=False the first forward pass inside the hooks (the prompt, under KV-cache
        generation) is left alone and only later passes (one per generated token) are steered.
        """
        strength = check_strength(strength)
        self.check_model(model)
        fns = {}
        for layer, direction in self.directions.items():
            vec = direction.to(model.device, model.dtype) * strength
            fns[site_of(layer)] = _adder(vec, prompt)
        return fns

    @contextlib.contextmanager
    def apply(self, model, strength: float = 1.0, prompt: bool = True):
        """Within the block, every forward pass of `model.hf` (also `generate`) is steered."""
        with metalens.hooks(model, self.hook_fns(model, strength, prompt)):
            yield self

    def scaled(self, factor: float) -> "SteeringVector":
        """A copy with every direction multiplied by `factor`."""
        out = SteeringVector(**{**self.__dict__, "directions": {k: v * factor for k, v in self.directions.items()}})
        return out

    def save(self, path: str | Path) -> Path:
        """Write `path` (.safetensors with the directions) and `path.json` (metadata)."""
        from safetensors.torch import save_file

        path = Path(path).with_suffix(".safetensors")
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({f"layer.{k}": v.detach().float().contiguous().cpu() for k, v in self.directions.items()}, path)
        meta = {k: v for k, v in self.__dict__.items() if k != "directions"}
        meta["layers"] = self.layers
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2, default=str))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "SteeringVector":
        """Read a vector written by `save`."""
        from safetensors.torch import load_file

        path = Path(path).with_suffix(".safetensors")
        if not path.exists():
            raise FileNotFoundError(f"No steering vector at {path}: write one with SteeringVector.save.")
        tensors = load_file(path)
        meta = json.loads(path.with_suffix(".json").read_text())
        meta.pop("layers", None)
        directions = {int(k.split(".")[1]): v for k, v in tensors.items()}
        return cls(directions=directions, **meta)


def _adder(vec: Tensor, prompt: bool):
    calls = [0]

    def fn(act):
        calls[0] += 1
        if not prompt and calls[0] == 1:
            return None
        return act + vec

    return fn


def _check_pairs(positive, negative, method: str) -> tuple[list[str], list[str]]:
    for name, texts in (("positive", positive), ("negative", negative)):
        if isinstance(texts, str):
            raise TypeError(f"{name} must be a list of strings, not one string: wrap it as [text].")
    positive, negative = list(positive), list(negative)
    if not positive and not negative:
        raise ValueError("No contrastive pairs: pass non-empty positive and negative text lists.")
    if not positive or not negative:
        empty = "positive" if not positive else "negative"
        raise ValueError(
            f"One-sided pairs: {empty} is empty. A steering vector needs texts that follow the rule "
            "(positive) and texts that violate it (negative); see metalens.steering.pairs_for_rule."
        )
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not '{method}'.")
    if method == "pca" and len(positive) != len(negative):
        raise ValueError(
            f"method='pca' works on pair differences, so it needs as many positives as negatives "
            f"(got {len(positive)} and {len(negative)}); use method='mean_diff' for unpaired texts."
        )
    return positive, negative


def _layers(model, layers) -> list[int]:
    if layers is None:
        layers = [model.n_layers // 2]
    if isinstance(layers, int):
        layers = [layers]
    layers = list(layers)
    if not layers:
        raise ValueError(f"No layers given: pick some of 0-{model.n_layers - 1}.")
    return [model.check_layer(layer) for layer in layers]


def train(model, positive: list[str], negative: list[str], layers=None, method: str = "mean_diff",
          positions: str = "mean", batch_size: int = 16, seed: int = 0) -> SteeringVector:
    """Train a steering vector from texts that follow (positive) and violate (negative) a rule.

    `mean_diff` is contrastive activation addition (Rimsky et al., "Steering Llama 2 via
    Contrastive Activation Addition"); `pca` takes the first principal direction of the pair
    differences (Zou et al., "Representation Engineering"), signed to agree with the mean
    difference and scaled to its norm. layers: an int or list (default: the middle block).
    """
    positive, negative = _check_pairs(positive, negative, method)
    layers = _layers(model, layers)
    sites = [site_of(layer) for layer in layers]
    kw = dict(positions=positions, batch_size=batch_size, progress=False, dtype=torch.float32)
    pos = metalens.capture(model, positive, sites, **kw)
    neg = metalens.capture(model, negative, sites, **kw)
    directions = {}
    for layer, site in zip(layers, sites):
        p: Float[Tensor, "n d_model"] = pos[site]
        n: Float[Tensor, "n d_model"] = neg[site]
        diff = p.mean(0) - n.mean(0)
        if method == "pca":
            diffs = p - n  # [n_pairs, d_model]
            _, _, vh = torch.linalg.svd(diffs, full_matrices=False)
            top = vh[0]
            top = top if torch.dot(top, diff) >= 0 else -top
            diff = top * diff.norm()
        directions[layer] = diff
    return SteeringVector(
        directions=directions, model_name=model.name, d_model=model.d_model, method=method,
        positions=positions, revision=model.revision, seed=seed, n_pairs=min(len(positive), len(negative)),
        metadata={k: v for k, v in model.metadata().items() if k in ("versions", "dtype", "n_layers")},
    )

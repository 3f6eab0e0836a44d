"""`SteeringVector`: per-layer directions added to the residual stream, and how to train one."""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor

import metalens
from metalens import sites
from metalens.artifact import read_artifact, write_artifact
from metalens.fastgen import fast_steering
from metalens.hooks import HookFn
from metalens.steering.io.gguf import read_gguf, write_gguf

METHODS = ("mean_diff", "pca")
ARTIFACT = "steering_vector"  # NAME of the saved files: steering_vector.safetensors + steering_vector.json
# The largest |strength| a workflow sweeps. In the rule workflow's unit (the mean difference) the useful
# strengths on the shipped models are 0.5-8 and in steer-ab's residual unit well under 1; beyond 100 the
# residual stream is swamped and the model writes nothing scorable, so such a value is a typo, not an experiment.
MAX_STRENGTH = 100.0
N_CANDIDATE_LAYERS = 4  # layers a workflow sweeps when none are given: model.default_layers(4), spread over the stack


def check_strength(strength, bound: float | None = None) -> float:
    """Return `strength` as a float, or raise if it is not a finite number (or |strength| > `bound`)."""
    try:
        value = float(strength)
    except (TypeError, ValueError):
        raise TypeError(f"strength must be a number, not {strength!r}.") from None
    if not math.isfinite(value):
        raise ValueError(f"strength must be finite, not {value}: pass e.g. strength=4.0.")
    if bound is not None and abs(value) > bound:
        raise ValueError(f"strength {value:g} is outside [-{bound:g}, {bound:g}]: steering that hard swamps the "
                         "residual stream; sweep e.g. 0.5 1 2 4.")
    return value


def adder(vec: Float[Tensor, "d_model"], prompt: bool = True, start=None) -> HookFn:
    """Hook fn adding `vec` at every position of every forward pass (under KV-cache generation:
    the prompt's pass, then one pass per new token); with prompt=False the first pass is left alone.

    start: per-row first steered position, one int per prompt row in the order the rows are run
        (as `metalens.next_token_logprobs` and `run_with_cache` run them: right-padded, in order);
        each pass takes the next `batch` entries and positions before a row's start are left
        untouched. Meant for full (uncached) passes, e.g. steering only an answer, not its question.
    It counts passes and rows, so use a fresh one for each `generate` batch / each read.
    """
    calls, taken = 0, 0
    starts = None if start is None else torch.as_tensor([int(k) for k in start], dtype=torch.long)

    def fn(act: Float[Tensor, "batch pos d_model"]):
        nonlocal calls, taken
        calls += 1
        if not prompt and calls == 1:
            return None
        if starts is None:
            return act + vec
        batch, n_pos = act.shape[0], act.shape[1]
        if taken + batch > len(starts):
            raise ValueError(f"This hook was given {len(starts)} start positions but has now seen {taken + batch} "
                             "rows: build a fresh edit (vector.edits(model, s, start=...)) per read, one start per row.")
        rows = starts[taken:taken + batch].to(act.device)  # [batch]
        taken += batch
        steer = (torch.arange(n_pos, device=act.device)[None, :] >= rows[:, None]).to(act.dtype)  # [batch, pos]
        return act + steer[..., None] * vec

    return fn


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
                f"{model.name} has d_model {model.d_model}: train a vector on this model with "
                "metalens.steering.train_steering_vector."
            )
        if self.model_name != model.name:
            raise ValueError(
                f"This steering vector was trained on '{self.model_name}', not '{model.name}': directions "
                "do not transfer between models. Train one on this model with metalens.steering.train_steering_vector."
            )
        for layer in self.layers:
            model.check_layer(layer)
            direction = self.directions[layer]
            if tuple(direction.shape) != (model.d_model,):
                raise ValueError(f"This steering vector's direction at layer {layer} has shape {tuple(direction.shape)}, "
                                 f"not [{model.d_model}] (d_model of {model.name}): the vector is corrupt; retrain it.")
            if not torch.isfinite(direction).all():
                raise ValueError(f"This steering vector's direction at layer {layer} holds NaN or infinite values: "
                                 "retrain it.")

    def edits(self, model, strength: float = 1.0, prompt: bool = True, start=None) -> dict[str, HookFn]:
        """`{site: fn}` adding strength * direction at each layer (for `metalens.generate(edits=...)`,
        `metalens.hooks` or `run_with_cache`); prompt=False and `start` (per-row first steered
        position) as in `adder`."""
        strength = check_strength(strength)
        self.check_model(model)
        return {sites.resid_post(layer): adder(direction.to(model.device, model.dtype) * strength, prompt, start)
                for layer, direction in self.directions.items()}

    @contextlib.contextmanager
    def apply(self, model, strength: float = 1.0, prompt: bool = True, fast: bool = False):
        """Within the block, every forward pass of `model.hf` (also `generate`) is steered.

        fast=True steers through the model's steering offsets (`metalens.fastgen`) instead of Python
        hooks, for `metalens.generate(..., fast=True)` inside the block: the vector is added in the compiled
        graph. Other forward passes in the block are steered as with prompt=True; with prompt=False only a
        fast generate's new tokens are.
        """
        if not fast:
            with metalens.hooks(model, self.edits(model, strength, prompt)):
                yield self
            return
        strength = check_strength(strength)
        self.check_model(model)
        vectors = {layer: direction.to(model.device, model.dtype) * strength  # as `edits` builds them
                   for layer, direction in self.directions.items()}
        with fast_steering(model, vectors, prompt):
            yield self

    def residual_scaled(self) -> "SteeringVector":
        """A copy whose direction at each layer is as long as the mean residual-stream norm there over the
        training texts (`metadata["resid_norm"]`), so strength s adds s times a typical activation's norm:
        a unit that means the same at every layer and in every model (gemma-3-270m's A/B mean differences are
        about 1 % of its residual norm). The raw lengths go to `metadata["raw_norm"]`."""
        norms = self.metadata.get("resid_norm")
        if not norms:
            raise ValueError("This vector has no residual norms in its metadata: train it with "
                             "metalens.steering.train_steering_vector, which records them.")
        norms = {int(k): float(v) for k, v in norms.items()}
        directions = {k: d / d.norm().clamp_min(1e-12) * norms[k] for k, d in self.directions.items()}
        raw = {str(k): float(d.norm()) for k, d in self.directions.items()}
        return SteeringVector(**{**self.__dict__, "directions": directions,
                                 "metadata": {**self.metadata, "unit": "residual", "raw_norm": raw}})

    def scaled(self, factor: float) -> "SteeringVector":
        """A copy with every direction multiplied by `factor`."""
        return self.restricted(self.layers, factor)

    def restricted(self, layers, factor: float = 1.0) -> "SteeringVector":
        """A copy keeping only `layers` (times `factor`), with the same provenance."""
        missing = sorted(set(layers) - set(self.directions))
        if missing:
            raise ValueError(f"This vector has no layers {missing}; it has {self.layers}.")
        return SteeringVector(**{**self.__dict__, "directions": {k: self.directions[k] * factor for k in layers}})

    def to_gguf(self, path: str | Path, strength: float = 1.0, model_hint: str | None = None) -> Path:
        """Write a llama.cpp control-vector GGUF (`direction.L` = this vector's layer L, the output of
        block L; layer 0 is refused, llama.cpp cannot steer it); returns `path`. See `steering.io.gguf`."""
        strength = check_strength(strength)
        _, meta = self.to_artifact()
        directions = {layer: d * strength for layer, d in self.directions.items()}
        return write_gguf(directions, path, model_hint or self.model_name, {**meta, "gguf_strength": strength})

    @classmethod
    def from_gguf(cls, path: str | Path, model=None) -> "SteeringVector":
        """The vector in a control-vector GGUF (ours, repeng's, llama.cpp's); `model` names and checks it.

        Files metalens wrote come back with their provenance (and unscaled); others take their model
        name from `model` when given, else from the file's `controlvector.model_hint`.
        """
        directions, meta, hint = read_gguf(path)
        width = next(iter(directions.values())).numel()
        if meta is not None:
            meta = {**meta, "layers": sorted(directions)}
            if meta.get("d_model", width) != width:
                raise ValueError(f"{path}: its directions are {width} wide but its provenance says d_model "
                                 f"{meta['d_model']}: the file was edited; re-export it.")
            vector = cls.from_artifact({f"layer.{k}": v for k, v in directions.items()}, meta)
            strength = meta.get("gguf_strength", 1.0)
            if strength != 1.0:  # written scaled: hand back the vector as trained
                vector = vector.scaled(1.0 / strength)
        else:
            vector = cls(directions, model_name=model.name if model is not None else hint, d_model=width,
                         method="gguf", positions="last", metadata={"source": str(path), "model_hint": hint})
        if model is not None:
            vector.check_model(model)
        return vector

    def to_artifact(self, prefix: str = "") -> tuple[dict[str, Tensor], dict]:
        """(tensors, metadata) as saved: tensors `{prefix}layer.L` (float32), metadata all other fields."""
        tensors = {f"{prefix}layer.{k}": v.detach().float() for k, v in self.directions.items()}
        meta = {k: v for k, v in self.__dict__.items() if k != "directions"}
        return tensors, {**meta, "layers": self.layers}

    @classmethod
    def from_artifact(cls, tensors: dict[str, Tensor], meta: dict, prefix: str = "") -> "SteeringVector":
        """The vector `to_artifact` described (other keys in `tensors` and `meta` are ignored)."""
        fields = {k: meta[k] for k in ("model_name", "d_model", "method", "positions", "revision", "seed",
                                       "n_pairs", "metadata") if k in meta}
        return cls(directions={int(layer): tensors[f"{prefix}layer.{layer}"] for layer in meta["layers"]}, **fields)

    def save(self, path: str | Path) -> Path:
        """Write directory `path` with steering_vector.safetensors and steering_vector.json; returns `path`."""
        tensors, meta = self.to_artifact()
        return write_artifact(path, ARTIFACT, tensors, meta)

    @classmethod
    def load(cls, path: str | Path, model=None) -> "SteeringVector":
        """Read a vector written by `save` (also the older `NAME.safetensors` + `NAME.json` pair).

        Every tensor must be `[d_model]` wide as its JSON declares, and finite; with `model`, the
        vector is also checked against it (`check_model`). Each refusal names the file.
        """
        path = Path(path)
        if not (path / f"{ARTIFACT}.json").exists() and (path.suffix == ".safetensors"
                                                         or path.with_suffix(".json").exists()):
            path, name = path.parent, path.stem  # the pre-artifact layout: a file pair, format 1
        else:
            name = ARTIFACT
        hint = "write one with SteeringVector.save(path)."
        _, meta = read_artifact(path, name, hint, required=("d_model", "model_name"))
        layers = meta.get("layers")
        if layers is None:
            tensors, _ = read_artifact(path, name, hint)
            layers = sorted(int(k.split(".")[1]) for k in tensors)
        if not isinstance(meta["d_model"], int) or not all(isinstance(k, int) for k in layers):
            raise ValueError(f"{path / name}.json declares d_model {meta['d_model']!r} and layers {layers!r}: both "
                             "must be integers; re-save the vector.")
        tensors, meta = read_artifact(path, name, hint, expect={f"layer.{k}": (meta["d_model"],) for k in layers})
        meta["layers"] = layers
        vector = cls.from_artifact(tensors, meta)
        if model is not None:
            try:
                vector.check_model(model)
            except ValueError as err:
                raise ValueError(f"{path / name}: {err}") from None
        return vector


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
    if isinstance(layers, (list, tuple)) and not layers:
        raise ValueError(f"No layers given: pick some of 0-{model.n_layers - 1}.")
    return model.resolve_layers(layers)  # None: the middle block


def train_steering_vector(model, positive: list[str], negative: list[str], layers=None, method: str = "mean_diff",
                          positions: str = "mean", batch_size: int = 16, seed: int = 0) -> SteeringVector:
    """A steering vector from texts that follow (positive) and violate (negative) a rule.

    `mean_diff` is contrastive activation addition (Rimsky et al., "Steering Llama 2 via
    Contrastive Activation Addition"); `pca` takes the first principal direction of the pair
    differences (Zou et al., "Representation Engineering"), signed to agree with the mean
    difference and scaled to its norm. layers: an int or list (default: the middle block).
    """
    positive, negative = _check_pairs(positive, negative, method)
    layers = _layers(model, layers)
    names = [sites.resid_post(layer) for layer in layers]
    kw = dict(positions=positions, batch_size=batch_size, progress=False, dtype=torch.float32)
    pos = metalens.capture(model, positive, names, **kw)
    neg = metalens.capture(model, negative, names, **kw)
    directions, resid_norm = {}, {}
    for layer, site in zip(layers, names):
        p: Float[Tensor, "n d_model"] = pos[site]
        n: Float[Tensor, "n d_model"] = neg[site]
        diff = p.mean(0) - n.mean(0)
        if method == "pca":
            _, _, vh = torch.linalg.svd(p - n, full_matrices=False)  # rows of vh: directions of pair differences
            top = vh[0]
            top = top if torch.dot(top, diff) >= 0 else -top
            diff = top * diff.norm()
        directions[layer] = diff
        resid_norm[str(layer)] = float(torch.cat([p, n]).norm(dim=-1).mean())  # read at the same positions
    return SteeringVector(
        directions=directions, model_name=model.name, d_model=model.d_model, method=method,
        positions=positions, revision=model.revision, seed=seed, n_pairs=min(len(positive), len(negative)),
        metadata={**{k: v for k, v in model.metadata().items() if k in ("versions", "dtype", "n_layers")},
                  "resid_norm": resid_norm},
    )

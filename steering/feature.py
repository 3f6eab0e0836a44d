"""`FeatureSteer`: steer by one SAE feature, adding its decoder direction or clamping its activation.

Both modes speak the feature's own unit: `add` with strength s adds what raising the feature's
activation by s would add to the reconstruction (s x its decoder row); `clamp` to value v encodes the
site's activation, sets the feature to v and adds the change in the decoded reconstruction,
`h + decode(f with f_i = v) - decode(f)`, so the dictionary's reconstruction error stays in the
stream. Clamping follows Templeton et al. 2024 ("Scaling Monosemanticity"), who found it steers more
reliably than adding. `FeatureSteer.edits` / `apply` have `SteeringVector`'s signature, so anything
that runs a vector's edits (the core's `metalens.hooks`, `metalens.generate`, `steering.generate`)
runs a feature.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor

import metalens
from metalens import sites
from metalens.capture import RESIDUAL_WIDTH
from metalens.hooks import HookFn
from metalens.steering.vector import SteeringVector, adder, check_strength

MODES = ("add", "clamp")


def _same_model(a: str, b: str) -> bool:
    """Whether two model names are one model: hub org dropped, case ignored, and a released variant suffix
    allowed (Gemma Scope names "gemma-3-270m-pt" what metalens calls "gemma-3-270m")."""
    a, b = (name.split("/")[-1].lower() for name in (a, b))
    return a == b or a.startswith(b + "-") or b.startswith(a + "-")


def clamper(sae, feature: int, value: float, prompt: bool = True, start=None) -> HookFn:
    """Hook fn setting feature `feature` of `sae` to `value` at every position (prompt / start as in `adder`):
    the activation plus the change clamping makes to the SAE's decoded reconstruction."""
    calls, taken = 0, 0
    starts = None if start is None else torch.as_tensor([int(k) for k in start], dtype=torch.long)

    def fn(act: Tensor):  # [batch, pos, d_in], or [batch, pos, head, d_head] at per-head sites
        nonlocal calls, taken
        calls += 1
        if not prompt and calls == 1:
            return None
        flat: Float[Tensor, "batch pos d_in"] = act.reshape(*act.shape[:2], -1)
        if flat.shape[-1] != sae.d_in:
            raise ValueError(f"The activation at {sae.site} has width {flat.shape[-1]}, the SAE's d_in is {sae.d_in}: "
                             "it was trained on another site or model.")
        x = flat.to(sae.W_enc.dtype)
        f: Float[Tensor, "batch pos d_sae"] = sae.encode(x)
        clamped = f.clone()
        clamped[..., feature] = value
        # Decoding both and subtracting (not (value - f_i) * W_dec[i]) keeps the dictionary's per-token
        # normalisation and decoder-norm rescaling exact; where f_i == value the change is exactly zero.
        change = (sae.decode(clamped, x) - sae.decode(f, x)).to(act.dtype)  # [batch, pos, d_in]
        if starts is not None:
            batch, n_pos = act.shape[0], act.shape[1]
            if taken + batch > len(starts):
                raise ValueError(f"This hook was given {len(starts)} start positions but has now seen "
                                 f"{taken + batch} rows: build fresh edits per read, one start per row.")
            rows = starts[taken:taken + batch].to(act.device)  # [batch]
            taken += batch
            steer = (torch.arange(n_pos, device=act.device)[None, :] >= rows[:, None]).to(act.dtype)  # [batch, pos]
            change = change * steer[..., None]
        return (flat + change).reshape(act.shape)

    return fn


@dataclass(eq=False)
class FeatureSteer:
    """Feature `feature` of `sae` as a steering intervention at the SAE's site.

    mode "add": strength s adds s x scale x the feature's decoder direction (like a steering vector);
    "clamp": strength s sets the feature's activation to s x scale at every position.
    scale: the unit of strength in feature-activation units (1: raw activations; the rule workflow
    uses the feature's largest activation on the rule's positive texts).
    """

    sae: object  # a metalens.sae.SAE (not a transcoder)
    feature: int
    mode: str = "clamp"
    scale: float = 1.0
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {self.mode!r}.")
        if getattr(self.sae, "is_transcoder", False):
            raise ValueError(f"This dictionary is a transcoder ({self.sae.site} -> {self.sae.out_site}): a feature "
                             "steers the site it reconstructs; load an SAE.")
        if self.sae.site is None:
            raise ValueError("This SAE names no site: set sae.site to the TransformerLens hook it was trained on.")
        if isinstance(self.feature, bool) or not isinstance(self.feature, int) or not 0 <= self.feature < self.sae.d_sae:
            raise ValueError(f"Feature {self.feature!r} is out of range: this SAE has features 0-{self.sae.d_sae - 1} "
                             f"(d_sae {self.sae.d_sae}).")
        self.scale = check_strength(self.scale)
        if self.scale <= 0:
            raise ValueError(f"scale must be positive, not {self.scale:g}: it is the feature-activation unit of strength.")

    @property
    def site(self) -> str:
        """The TransformerLens hook the feature is read and written at."""
        return self.sae.site

    @property
    def direction(self) -> Float[Tensor, "d_in"]:
        """What one unit of the feature's activation adds to the reconstruction (its decoder row, float32).

        For an SAE that normalises each token (`normalize_activations`), this is in the normalised units;
        the clamp undoes the normalisation per token, the add does not."""
        row = self.sae.W_dec[self.feature].float()
        if self.sae.rescale_acts_by_decoder_norm:
            row = row / row.norm()
        return row

    def check_model(self, model) -> None:
        """Raise if the SAE cannot steer `model` (a site it lacks, another width there); warn if it names
        another model."""
        if self.sae.model and not _same_model(self.sae.model, model.name):  # a warning: releases name models their way
            warnings.warn(f"The SAE names its model '{self.sae.model}', not '{model.name}': if it was trained on "
                          "another model (not another name for this one), its features need not mean anything here.",
                          stacklevel=2)
        metalens.resolve_site(model, self.site)  # a site this model lacks: refused with the valid names
        if self.site.endswith(RESIDUAL_WIDTH) and self.sae.d_in != model.d_model:
            raise ValueError(f"The activation at {self.site} has width {model.d_model} in {model.name}, the SAE's d_in "
                             f"is {self.sae.d_in}: it was trained on another site or model.")

    def edits(self, model, strength: float = 1.0, prompt: bool = True, start=None) -> dict[str, HookFn]:
        """`{site: fn}` steering at the SAE's site (for `metalens.generate(edits=...)`, `metalens.hooks` or
        `run_with_cache`), as `SteeringVector.edits`; a fresh dict (fresh pass counters) per call."""
        strength = check_strength(strength)
        self.check_model(model)
        if self.mode == "add":
            heads = metalens.resolve_site(model, self.site).heads  # per-head sites are seen as [.., head, d_head]
            vec = self.direction.to(model.device, model.dtype) * (strength * self.scale)
            return {self.site: adder(vec if heads is None else vec.reshape(heads, -1), prompt, start)}
        return {self.site: clamper(self.sae.to(model.device), self.feature, strength * self.scale, prompt, start)}

    @contextlib.contextmanager
    def apply(self, model, strength: float = 1.0, prompt: bool = True):
        """Within the block, every forward pass of `model.hf` (also `generate`) is steered."""
        with metalens.hooks(model, self.edits(model, strength, prompt)):
            yield self

    def as_vector(self, model) -> SteeringVector:
        """The add mode as a `SteeringVector` (scale x decoder direction at the block); residual-stream SAEs only."""
        layer = resid_post_layer(self.site)
        if layer is None:
            raise ValueError(f"A SteeringVector lives at hook_resid_post; this SAE's site is {self.site}.")
        self.check_model(model)
        return SteeringVector({layer: self.direction * self.scale}, model_name=model.name, d_model=model.d_model,
                              method="sae_feature", positions="all", revision=model.revision,
                              metadata={"sae_feature": self.feature, "site": self.site, "scale": self.scale})

    def to_dict(self) -> dict:
        """JSON-ready description (the SAE itself by its site, width and metadata)."""
        return {"feature": self.feature, "mode": self.mode, "scale": self.scale, "site": self.site,
                "d_sae": self.sae.d_sae, "architecture": self.sae.architecture, "sae_model": self.sae.model,
                **self.metadata}


def resid_post_layer(site: str) -> int | None:
    """The block whose output `site` is (`blocks.L.hook_resid_post` -> L), else None."""
    parts = site.split(".")
    if len(parts) == 3 and parts[0] == "blocks" and parts[2] == "hook_resid_post":
        return int(parts[1])
    return None


@dataclass
class FeatureStats:
    """Per-feature activations on a rule's texts: the contrast that picks a feature and the max that sizes it."""

    mean_positive: Float[Tensor, "d_sae"]  # mean over positive texts of each text's token-mean (or last) activation
    mean_negative: Float[Tensor, "d_sae"]
    max_positive: Float[Tensor, "d_sae"]  # largest activation on any positive-text token (BOS excluded)

    @property
    def contrast(self) -> Float[Tensor, "d_sae"]:
        """mean_positive - mean_negative: the feature-space analogue of a mean-difference vector."""
        return self.mean_positive - self.mean_negative


def feature_stats(model, sae, positive: list[str], negative: list[str], positions: str = "mean",
                  batch_size: int = 16) -> FeatureStats:
    """Mean and max activations of every feature on `positive` and `negative` texts.

    positions: "mean" (each text's token mean) or "last" (its last token: where a CAA pair differs).
    BOS is left out of means and maxima, as `capture`'s means leave it out: the attention sink's
    outsized norm lights features of its own.
    """
    if positions not in ("mean", "last"):
        raise ValueError(f"positions must be 'mean' or 'last', not {positions!r}.")
    bos = model.tokenizer.bos_token_id

    def per_text(texts) -> tuple[Tensor, Tensor]:
        acts = metalens.capture(model, texts, [], positions="all", batch_size=batch_size, progress=False,
                                dtype=torch.float32, sae=sae)
        first = model.tokenize(texts)["input_ids"][:, 0]  # [n_texts]
        reads, maxes = [], []
        for k, f in enumerate(acts.split(f"{sae.site}.features")):  # f [n_tokens, d_sae]
            if bos is not None and int(first[k]) == bos and len(f) > 1:
                f = f[1:]
            reads.append(f.mean(0) if positions == "mean" else f[-1])
            maxes.append(f.max(0).values)
        return torch.stack(reads), torch.stack(maxes)  # [n_texts, d_sae] each

    pos_read, pos_max = per_text(positive)
    neg_read, _ = per_text(negative)
    return FeatureStats(pos_read.mean(0), neg_read.mean(0), pos_max.max(0).values)


def decoder_cosines(sae, direction: Float[Tensor, "d_in"]) -> Float[Tensor, "d_sae"]:
    """Cosine of every feature's decoder row with `direction` (e.g. a steering vector at the SAE's site)."""
    rows = sae.W_dec.float()
    return torch.nn.functional.cosine_similarity(rows, direction.float()[None, :].to(rows.device), dim=-1)

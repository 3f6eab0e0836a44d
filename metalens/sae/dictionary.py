"""`SAE`: a sparse autoencoder or transcoder as plain tensors, with encode / decode / splice.

The math is SAELens' inference path, so a dictionary read from its files encodes the same:
`f = act((x_norm - b_dec * apply_b_dec_to_input) @ W_enc + b_enc)` and
`x_hat = denorm(f @ W_dec + b_dec)` (+ `x @ W_skip` for a transcoder with a skip connection).
A transcoder reads `site` and writes `out_site`; a plain SAE reconstructs `site` itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor

ARCHITECTURES = ("standard", "topk", "jumprelu")
# SAELens' run-time normalisations; "expected_average_only_in" is folded into the weights when
# training ends, so at inference it is the identity, as in SAELens.
NORMALIZATIONS = ("none", "expected_average_only_in", "constant_norm_rescale", "layer_norm")


@dataclass(eq=False)
class SAE:
    """Dictionary weights and the metadata to place them in a model.

    W_enc [d_in, d_sae], W_dec [d_sae, d_out], b_enc [d_sae], b_dec [d_out]; `threshold` [d_sae]
    for JumpReLU; `k` for TopK; `W_skip` [d_in, d_out] for a transcoder's affine skip.
    `site` is a TransformerLens hook name (as `metalens.sites` uses); `out_site` is set for
    transcoders only.
    """

    W_enc: Tensor
    W_dec: Tensor
    b_enc: Tensor
    b_dec: Tensor
    architecture: str = "standard"
    site: str | None = None
    model: str | None = None
    k: int | None = None
    threshold: Tensor | None = None
    out_site: str | None = None
    W_skip: Tensor | None = None
    apply_b_dec_to_input: bool = False
    normalize_activations: str = "none"
    rescale_acts_by_decoder_norm: bool = False
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        check_sae(self)

    @property
    def d_in(self) -> int:
        return self.W_enc.shape[0]

    @property
    def d_sae(self) -> int:
        return self.W_enc.shape[1]

    @property
    def d_out(self) -> int:
        return self.W_dec.shape[1]

    @property
    def is_transcoder(self) -> bool:
        return self.out_site is not None and self.out_site != self.site

    def tensors(self) -> dict[str, Tensor]:
        """The weights by SAELens' names (W_enc, W_dec, b_enc, b_dec, threshold, W_skip when set)."""
        out = {"W_enc": self.W_enc, "W_dec": self.W_dec, "b_enc": self.b_enc, "b_dec": self.b_dec}
        if self.threshold is not None:
            out["threshold"] = self.threshold
        if self.W_skip is not None:
            out["W_skip"] = self.W_skip
        return out

    def to(self, device=None, dtype: torch.dtype | None = None) -> "SAE":
        """A copy with every tensor moved / cast."""
        moved = {k: v.to(device=device, dtype=dtype) for k, v in self.tensors().items()}
        return replace(self, **moved, metadata=dict(self.metadata))

    def _norm_in(self, x: Tensor) -> tuple[Tensor, tuple]:
        """x [..., d_in] normalised as the dictionary was trained, and what undoes it on the output."""
        if self.normalize_activations == "constant_norm_rescale":
            scale = self.d_in**0.5 / x.norm(dim=-1, keepdim=True)  # [..., 1]
            return x * scale, (scale,)
        if self.normalize_activations == "layer_norm":
            mu = x.mean(dim=-1, keepdim=True)
            x = x - mu
            std = x.std(dim=-1, keepdim=True)  # unbiased, and eps added outside the root: SAELens' convention
            return x / (std + 1e-5), (mu, std)
        return x, ()

    def _norm_out(self, y: Tensor, undo: tuple) -> Tensor:
        if self.normalize_activations == "constant_norm_rescale":
            return y / undo[0]
        if self.normalize_activations == "layer_norm":
            return y * undo[1] + undo[0]
        return y

    def pre_acts(self, x: Tensor) -> Tensor:
        """Encoder pre-activations [..., d_sae] of x [..., d_in] (before the sparsifying nonlinearity)."""
        x, _ = self._norm_in(x)
        if self.apply_b_dec_to_input:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def activate(self, pre: Tensor) -> Tensor:
        """The architecture's nonlinearity on pre-activations [..., d_sae]."""
        if self.architecture == "jumprelu":
            return torch.relu(pre) * (pre > self.threshold)
        if self.architecture == "topk":
            if self.rescale_acts_by_decoder_norm:
                pre = pre * self.W_dec.norm(dim=-1)
            top = pre.topk(self.k, dim=-1)
            return torch.zeros_like(pre).scatter(-1, top.indices, torch.relu(top.values))
        return torch.relu(pre)

    def encode(self, x: Tensor) -> Tensor:
        """Feature activations [..., d_sae] of activations x [..., d_in]."""
        return self.activate(self.pre_acts(x))

    def decode(self, f: Tensor, x: Tensor | None = None) -> Tensor:
        """Reconstruction [..., d_out] from features f [..., d_sae].

        x: the input the features came from, needed to undo a per-token normalisation and for a
        transcoder's skip connection; without it those parts are left out.
        """
        if self.rescale_acts_by_decoder_norm:
            f = f / self.W_dec.norm(dim=-1)
        y = f @ self.W_dec + self.b_dec
        if x is not None:
            if not self.is_transcoder:  # a transcoder's output lives at another site: never de-normalised
                y = self._norm_out(y, self._norm_in(x)[1])
            if self.W_skip is not None:
                y = y + x @ self.W_skip
        return y

    def forward(self, x: Tensor) -> Tensor:
        """decode(encode(x)): the reconstruction [..., d_out] of x [..., d_in]."""
        return self.decode(self.encode(x), x)

    __call__ = forward

    def splice(self, act: Tensor) -> Tensor:
        """An edit for `run_with_cache(edits={sae.site: sae.splice})`: the activation's reconstruction.

        Per-head views [batch, pos, head, d_head] are flattened to d_in and back; the result keeps
        the activation's dtype. Only for SAEs: a transcoder's splice spans two sites
        (`metalens.sae.splice_edits`).
        """
        if self.is_transcoder:
            raise ValueError(f"This is a transcoder ({self.site} -> {self.out_site}): splice it with "
                             "metalens.sae.splice_edits(sae), which reads one site and writes the other.")
        flat = act.reshape(*act.shape[:2], -1) if act.dim() == 4 else act
        if flat.shape[-1] != self.d_in:
            raise ValueError(f"The activation at {self.site} has width {flat.shape[-1]}, this SAE d_in {self.d_in}: "
                             "it was trained on another site or model.")
        out = self.forward(flat.to(self.W_enc.dtype)).to(act.dtype)
        return out.reshape(act.shape)

    def save(self, path) -> Path:
        """Write SAELens' layout into directory `path` (cfg.json + sae_weights.safetensors)."""
        from metalens.sae.formats import save_saelens

        return save_saelens(self, path)

    @classmethod
    def load(cls, path) -> "SAE":
        """Read a SAELens folder or a Gemma Scope (2) folder (see `metalens.sae.load_sae`)."""
        from metalens.sae.formats import load_sae

        return load_sae(path)


def check_sae(sae: SAE, where: str = "SAE") -> None:
    """Refuse inconsistent shapes, an unknown architecture or non-finite weights (ValueError naming `where`)."""
    if sae.architecture not in ARCHITECTURES:
        raise ValueError(f"{where}: unknown architecture {sae.architecture!r}; metalens reads {list(ARCHITECTURES)}: "
                         "convert the dictionary to one of them or load it with the library that wrote it.")
    if sae.normalize_activations not in NORMALIZATIONS:
        raise ValueError(f"{where}: unknown normalize_activations {sae.normalize_activations!r}; "
                         f"metalens reads {list(NORMALIZATIONS)}.")
    if sae.W_enc.dim() != 2 or sae.W_dec.dim() != 2:
        raise ValueError(f"{where}: W_enc and W_dec must be matrices, got shapes {list(sae.W_enc.shape)} "
                         f"and {list(sae.W_dec.shape)}.")
    d_in, d_sae = sae.W_enc.shape
    d_out = sae.W_dec.shape[1]
    want = {"W_dec": (d_sae, d_out), "b_enc": (d_sae,), "b_dec": (d_out,)}
    if sae.threshold is not None:
        want["threshold"] = (d_sae,)
    if sae.W_skip is not None:
        want["W_skip"] = (d_in, d_out)
    for name, shape in want.items():
        got = tuple(getattr(sae, name).shape)
        if got != shape:
            raise ValueError(f"{where}: tensor '{name}' has shape {list(got)}, expected {list(shape)} for "
                             f"W_enc {[d_in, d_sae]}: the files belong to different dictionaries; re-save them together.")
    if sae.architecture == "jumprelu" and sae.threshold is None:
        raise ValueError(f"{where}: a JumpReLU dictionary needs a 'threshold' tensor [d_sae]; it is missing.")
    if sae.architecture == "topk" and (not isinstance(sae.k, int) or isinstance(sae.k, bool) or not 0 < sae.k <= d_sae):
        raise ValueError(f"{where}: a TopK dictionary needs an integer k in 1..{d_sae}, got {sae.k!r}.")
    if sae.apply_b_dec_to_input and d_out != d_in:
        raise ValueError(f"{where}: apply_b_dec_to_input needs d_in == d_out (got {d_in} and {d_out}): "
                         "a transcoder does not subtract its output bias from its input.")
    for name, value in sae.tensors().items():
        if not torch.isfinite(value).all():
            raise ValueError(f"{where}: tensor '{name}' holds NaN or infinite values; re-train or re-download it.")

"""`ReservedHead`: reward/length prediction read from the logits of K reserved tokens.

The head is K rows of the unembedding (tied to the embedding on gemma) that belong to tokens
the model never reads or writes. Its distribution is the softmax over those K logits only, so
it comes out of the forward pass that computes the next token, at no extra cost (the ZIP-RC
idea: zero-overhead introspective prediction of reward and cost).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from transformers import LogitsProcessor

from metalens.artifact import read_artifact, write_artifact
from metalens.introspect.heads.bins import BinSpec

FORMAT = "metalens.introspect.heads.head/1"


def reserved_block(model, n_tokens: int) -> tuple[int, list[str]]:
    """First id of `n_tokens` contiguous never-used tokens, and how they were chosen.

    Prefers a contiguous run of `<unusedN>` tokens (gemma has 6,242); a model without them
    gets the last `n_tokens` ids of its vocabulary that are not special tokens, which for BPE
    vocabularies are the rarest merges (documented in the head's metadata).
    """
    tok = model.tokenizer
    vocab = tok.get_vocab()
    unused = sorted(i for t, i in vocab.items() if t.startswith("<unused") and t.endswith(">"))
    run_start, run_len = None, 0
    for prev, cur in zip([None] + unused, unused):
        run_len = run_len + 1 if prev is not None and cur == prev + 1 else 1
        if run_len == 1:
            run_start = cur
        if run_len == n_tokens:
            return run_start, [f"{n_tokens} contiguous <unusedN> tokens from id {run_start}"]
    special = set(tok.all_special_ids)
    n_rows = model.hf.get_output_embeddings().weight.shape[0]
    for start in range(min(len(tok), n_rows) - n_tokens, -1, -1):
        if not special.intersection(range(start, start + n_tokens)):
            return start, [f"no <unusedN> run of {n_tokens}: using the last {n_tokens} non-special "
                           f"vocabulary ids from {start} (rarest BPE merges)"]
    raise ValueError(f"{model.name} has no {n_tokens} contiguous non-special tokens to reserve.")


@dataclass
class ReservedHead:
    """K reserved unembedding rows `weight` [K, d_model] starting at token id `start`."""

    start: int
    weight: Tensor  # [K, d_model]
    spec: BinSpec = field(default_factory=BinSpec)
    metadata: dict = field(default_factory=dict)

    @classmethod
    def from_model(cls, model, spec: BinSpec | None = None, start: int | None = None) -> "ReservedHead":
        """The head as it currently sits in `model` (untrained: the reserved rows as loaded)."""
        spec = spec or BinSpec()
        note = ["start given by the user"]
        if start is None:
            start, note = reserved_block(model, spec.n_bins)
        rows = model.hf.get_output_embeddings().weight[start : start + spec.n_bins]
        return cls(start, rows.detach().clone().float(), spec, {**model.metadata(), "reserved": note})

    @property
    def token_ids(self) -> range:
        """The K reserved token ids, in bin order."""
        return range(self.start, self.start + self.spec.n_bins)

    def logits(self, full_logits: Tensor) -> Tensor:
        """[..., vocab] model logits -> [..., K] the reserved slice (a view, no copy)."""
        return full_logits[..., self.start : self.start + self.spec.n_bins]

    def probs(self, full_logits: Tensor) -> Tensor:
        """[..., vocab] model logits -> [..., K] joint bin probabilities (sum to one)."""
        return self.logits(full_logits).float().softmax(-1)

    def probs_from_hidden(self, model, hidden: Tensor) -> Tensor:
        """[..., d_model] final-norm hidden states -> [..., K], as `model`'s own logits give.

        Only the K reserved rows are multiplied (not the whole vocabulary); the model's final-logit
        softcap is applied by the model, elementwise, so slicing first changes nothing.
        """
        logits = hidden.float() @ self.weight.to(hidden.device).T  # [..., K]
        return model.softcap(logits).softmax(-1)

    @contextlib.contextmanager
    def applied(self, model):
        """Write the head's rows into `model`'s unembedding inside the block; restore on exit."""
        weight = model.hf.get_output_embeddings().weight
        old = weight[self.start : self.start + self.spec.n_bins].detach().clone()
        try:
            self.install(model)
            yield model
        finally:
            with torch.no_grad():
                weight[self.start : self.start + self.spec.n_bins] = old

    def check_fits(self, model) -> None:
        """Refuse a head that does not fit `model` (another width, reserved ids past its vocabulary), naming
        the head's file, before any work is done with it."""
        where = self.metadata.get("path", "this head")
        n_rows, width = model.hf.get_output_embeddings().weight.shape
        if self.weight.shape[1] != width:
            raise ValueError(f"{where}: weight {list(self.weight.shape)} is {self.weight.shape[1]} wide, but "
                             f"{model.name} is {width} wide: the head was trained on another model; pass that "
                             "model (--model) or train a head for this one.")
        if not 0 <= self.start <= n_rows - self.spec.n_bins:
            raise ValueError(f"{where}: reserved ids {self.start}..{self.start + self.spec.n_bins - 1} lie outside "
                             f"{model.name}'s {n_rows} unembedding rows: train a head for this model.")

    def install(self, model) -> None:
        """Write the head's rows into `model`'s unembedding (and tied embedding) for good."""
        self.check_fits(model)
        weight = model.hf.get_output_embeddings().weight
        with torch.no_grad():
            weight[self.start : self.start + self.spec.n_bins] = self.weight.to(weight.device, weight.dtype)

    def save(self, path: str | Path) -> Path:
        """Write `head.safetensors` + `head.json` into directory `path`."""
        kept = {k: v for k, v in self.metadata.items() if k != "path"}
        meta = {"format": FORMAT, "start": self.start, "spec": self.spec.to_dict(), **kept}
        return write_artifact(path, "head", {"weight": self.weight.detach().cpu()}, meta)

    @classmethod
    def load(cls, path: str | Path) -> "ReservedHead":
        """The head written by `save` (its rows, bins and metadata)."""
        tensors, meta = read_artifact(path, "head", "train one with `metalens introspect train`.",
                                      expect={"weight": (None, None)}, required=("start", "spec"))
        weight = tensors["weight"]
        try:
            start, spec = int(meta.pop("start")), BinSpec.from_dict(meta.pop("spec"))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{Path(path) / 'head.json'}: unreadable start or spec ({err}); re-save the head.") from None
        if weight.shape[0] != spec.n_bins:
            raise ValueError(f"{Path(path) / 'head.safetensors'}: weight has {weight.shape[0]} rows, but its bins need "
                             f"{spec.n_bins} ({spec.n_rewards} x {spec.n_lengths}): the files do not belong together.")
        meta.pop("format", None)
        meta["path"] = str(Path(path) / "head.safetensors")  # named by errors; not saved again
        return cls(start, weight, spec, meta)


class ReservedMask(LogitsProcessor):
    """Sets the reserved logits to -inf so they are never sampled (in every training mode)."""

    def __init__(self, head: ReservedHead):
        self.start, self.stop = head.start, head.start + head.spec.n_bins

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        scores = scores.clone()
        scores[..., self.start : self.stop] = float("-inf")
        return scores


class HeadReadout(LogitsProcessor):
    """Records the head's distribution [batch, K] from each step's raw logits; changes nothing.

    Put it before any temperature or masking processor so it sees the model's own logits.
    """

    def __init__(self, head: ReservedHead):
        self.head = head
        self.steps: list[Tensor] = []

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        self.steps.append(self.head.probs(scores))
        return scores

    def stacked(self) -> Tensor:
        """[batch, steps, K] recorded distributions."""
        return torch.stack(self.steps, 1)

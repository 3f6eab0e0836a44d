"""`Model`: one set of weights with HF, TransformerLens and nnsight views over it."""
from __future__ import annotations

import copy
from functools import cache
from importlib.metadata import PackageNotFoundError, version

import torch
from torch import nn

_VERSIONED = ["metalens", "torch", "transformers", "transformer-lens", "nnsight", "scikit-learn"]


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries whose behaviour results depend on (a fresh dict each call)."""
    return dict(_installed_versions())


@cache
def _installed_versions() -> tuple[tuple[str, str], ...]:
    # Read once per process: each lookup parses the package's METADATA file, which cost more than a
    # tiny model's whole forward pass when every capture call asked again (bench/overhead.py).
    out = []
    for pkg in _VERSIONED:
        try:
            out.append((pkg, version(pkg)))
        except PackageNotFoundError:
            out.append((pkg, "not installed"))
    return tuple(out)


def _check_side(side: str) -> None:
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', not {side!r}.")


class Model:
    """A loaded causal LM: `.hf`, `.tokenizer`, lazy `.bridge` and `.nnsight`, and its shape.

    The views wrap the same `nn.Module`s: building one copies no weights.
    """

    def __init__(self, hf: nn.Module, tokenizer, name: str, revision: str = "main", hub_id: str | None = None):
        self.hf = hf
        self.tokenizer = tokenizer
        self.name = name
        self.revision = revision
        self.hub_id = hub_id or name  # upstream id: TransformerLens keys its adapters by it
        self._bridge = None
        self._nnsight = None
        self._offsets = None  # metalens.fastgen.SteerOffsets, made by the first fast generate or fast steering
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        base = getattr(hf, "model", None)
        if base is None or not isinstance(getattr(base, "layers", None), nn.ModuleList):
            raise ValueError(
                f"{type(hf).__name__} has no `.model.layers`; metalens supports decoder-only "
                "causal LMs laid out like Llama, Gemma, Qwen or Mistral."
            )
        cfg = hf.config
        self.n_layers: int = cfg.num_hidden_layers
        self.n_heads: int = cfg.num_attention_heads
        self.n_kv_heads: int = getattr(cfg, "num_key_value_heads", None) or self.n_heads
        self.d_model: int = cfg.hidden_size
        self.d_head: int = getattr(cfg, "head_dim", None) or self.d_model // self.n_heads
        self.d_vocab: int = cfg.vocab_size

    def __repr__(self) -> str:
        return (
            f"Model('{self.name}', n_layers={self.n_layers}, n_heads={self.n_heads}, "
            f"d_model={self.d_model}, device={self.device}, dtype={self.dtype})"
        )

    @property
    def layers(self) -> nn.ModuleList:
        """The decoder blocks, `blocks.L` in hook names."""
        return self.hf.model.layers

    @property
    def device(self) -> torch.device:
        """Device of the input embedding (where inputs go, also under a device_map)."""
        return self.hf.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.hf.get_input_embeddings().weight.dtype

    @property
    def is_chat(self) -> bool:
        """True when the tokenizer carries a chat template (an instruct model)."""
        return bool(getattr(self.tokenizer, "chat_template", None))

    def metadata(self) -> dict:
        """Model name, revision, shape and library versions, for artifacts' metadata."""
        return {
            "model": self.name,
            "hub_id": self.hub_id,
            "revision": self.revision,
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "d_model": self.d_model,
            "dtype": str(self.dtype).removeprefix("torch."),
            "versions": library_versions(),
        }

    def check_layer(self, layer: int) -> int:
        """Return `layer` if it is a valid block index, else raise naming the valid range."""
        if not isinstance(layer, int) or not 0 <= layer < self.n_layers:
            raise ValueError(
                f"Layer {layer!r} is out of range: {self.name} has blocks 0-{self.n_layers - 1}."
            )
        return layer

    def default_layers(self, count: int = 1) -> list[int]:
        """The blocks a verb uses when the user names none: `count` blocks spread evenly inside the stack.

        One block is the middle one (`n_layers // 2`); several sit at (i + 1) / (count + 1) of the depth,
        so neither the first nor the last block is a default. Every area calls this, so a default means
        the same thing on every verb.
        """
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be a positive integer, not {count!r}.")
        if count == 1:
            return [self.n_layers // 2]
        spread = [round((i + 1) * self.n_layers / (count + 1)) for i in range(count)]
        return sorted(set(min(self.n_layers - 1, max(0, layer)) for layer in spread))

    def resolve_layers(self, layers) -> list[int]:
        """Blocks from a user's choice: None -> `default_layers()`, "all" -> every block, else checked ints."""
        if layers is None:
            return self.default_layers()
        if isinstance(layers, str) or (isinstance(layers, (list, tuple)) and "all" in layers):
            if layers not in ("all", ["all"], ("all",)):
                raise ValueError(f"Layers {layers!r}: give block numbers or 'all' alone, not both.")
            return list(range(self.n_layers))
        if isinstance(layers, int):
            layers = [layers]
        return [self.check_layer(layer) for layer in dict.fromkeys(layers)]

    def tokenize(self, texts: list[str], max_length: int | None = None, add_special_tokens: bool = True,
                 side: str = "right"):
        """Padded batch on the model's device: input_ids and attention_mask, [batch, pos].

        side: "right" keeps every token at the position it has alone (capture, patching); "left"
        lines the last tokens up for generation. The shared tokenizer is never modified.
        """
        if isinstance(texts, str):
            texts = [texts]
        if not texts:
            raise ValueError("No texts given: pass a non-empty list of strings.")
        _check_side(side)
        batch = self.tokenizer(
            list(texts),
            return_tensors="pt",
            padding=True,
            padding_side=side,
            truncation=max_length is not None,
            max_length=max_length,
            add_special_tokens=add_special_tokens,
        )
        return batch.to(self.device)

    def pad(self, sequences: list[list[int]], side: str = "right") -> tuple[torch.Tensor, torch.Tensor]:
        """Pad token-id lists: (input_ids, attention_mask), each [batch, max_len], on the model's device.

        Right padding keeps every token at the position it has alone, so per-position
        bookkeeping (spans, label positions) stays valid in the batch; left padding is for generation.
        """
        if not sequences:
            raise ValueError("No sequences to pad: pass a non-empty list of token-id lists.")
        _check_side(side)
        width = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, seq in enumerate(sequences):
            cols = slice(0, len(seq)) if side == "right" else slice(width - len(seq), width)
            ids[row, cols] = torch.as_tensor(seq, dtype=torch.long)
            mask[row, cols] = 1
        return ids.to(self.device), mask.to(self.device)

    @property
    def softcap_value(self) -> float | None:
        """The final-logit softcap (gemma-2/3 style `c * tanh(x / c)`), or None when the model has none."""
        return getattr(self.hf.config, "final_logit_softcapping", None) or None

    def softcap(self, logits: torch.Tensor) -> torch.Tensor:
        """Apply the model's final-logit softcap to raw unembedding outputs (identity without one)."""
        cap = self.softcap_value
        return logits if cap is None else torch.tanh(logits / cap) * cap

    def final_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits `[..., vocab]` from final-norm hidden states `[..., d_model]`: unembedding, then softcap.

        Equal to the model's own logits at those positions; use it with `FINAL_NORM` captures to
        score only the positions you need.
        """
        head = self.hf.get_output_embeddings()
        return self.softcap(head(hidden.to(head.weight.device, head.weight.dtype)))

    def unembed(self, hidden: torch.Tensor, rows=None) -> torch.Tensor:
        """Softcapped logits `[..., n_rows]` from final-norm states `[..., d_model]`, through `rows` only.

        rows: None for the whole vocabulary (as `final_logits`), or a range, slice, list or tensor of
        token ids (a reserved block, a few option tokens): only those rows of the unembedding are
        multiplied, in float32, and the softcap is elementwise, so the values equal the model's own
        logits at those ids. The one place a reserved or option slice is read from the unembedding.
        """
        if rows is None:
            return self.final_logits(hidden)
        weight = self.hf.get_output_embeddings().weight  # [vocab, d_model]
        if isinstance(rows, range):
            rows = slice(rows.start, rows.stop, rows.step)
        elif not isinstance(rows, slice):
            rows = torch.as_tensor(rows, dtype=torch.long, device=weight.device)
        picked = weight[rows].float()  # [n_rows, d_model]
        return self.softcap(hidden.to(picked.device).float() @ picked.T)

    @property
    def bridge(self):
        """TransformerLens `TransformerBridge` over the same weights (built on first use).

        TransformerLens swaps bridge components into the model it wraps, so it wraps a
        structural copy of `.hf` whose parameters and buffers *are* `.hf`'s tensors: no weight
        is copied, edits to the weights show in both, and `.hf` keeps its own module tree.
        """
        if self._bridge is None:
            from transformer_lens.model_bridge import TransformerBridge

            shared = {id(t): t for t in [*self.hf.parameters(), *self.hf.buffers()]}
            skeleton = copy.deepcopy(self.hf, shared)
            config = skeleton.config
            if not getattr(config, "architectures", None):
                config.architectures = [type(self.hf).__name__]
            try:
                self._bridge = TransformerBridge.boot_transformers(
                    self.hub_id,
                    hf_model=skeleton,
                    tokenizer=self.tokenizer,
                    device=str(self.device),
                    dtype=self.dtype,
                )
            except Exception as err:  # TL raises several types for unsupported architectures
                raise ValueError(
                    f"TransformerLens cannot wrap {config.architectures[0]} ({err}). "
                    "Use metalens.capture / metalens.hooks or the .nnsight view, which work "
                    "on any Llama/Gemma-style decoder, or upgrade transformer-lens."
                ) from err
        return self._bridge

    @property
    def nnsight(self):
        """nnsight `TransformersModel` (text generation) over the same weights (built on first use).

        nnsight sets its tokenizer to left padding, so it gets its own copy: `.tokenizer` is never changed.
        """
        if self._nnsight is None:
            from nnsight.modeling.transformers import TransformersModel

            self._nnsight = TransformersModel(self.hf, tokenizer=copy.deepcopy(self.tokenizer), task="text-generation")
        return self._nnsight

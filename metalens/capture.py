"""`capture`: run a model over texts in batches and keep the activations at chosen sites."""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from metalens.activations import POSITIONS, Activations, concat
from metalens.forward import run_with_cache
from metalens.sites import resolve_sites
from metalens.store import ShardWriter


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not one string: wrap it as [text].")
    texts = list(texts)
    if not texts:
        raise ValueError("No texts to capture: the list (or file) is empty.")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"texts[{bad[0]}] is {type(texts[bad[0]]).__name__}, not str.")
    return texts


def _reduce(act: Tensor, mask: Tensor, positions: str, skip_first: Tensor) -> Tensor:
    """act [batch, pos, ...], mask [batch, pos] -> [batch, ...] or [n_tokens, ...]."""
    if positions == "all":
        return act[mask.bool()]
    if positions == "last":
        last = mask.sum(1) - 1  # right padding: a text's last token sits at its length - 1
        return act[torch.arange(act.shape[0], device=act.device), last]
    keep = mask.clone()
    keep[:, 0] &= ~skip_first  # the BOS token is an attention sink with outsized norm
    keep = keep.float().reshape(*keep.shape, *[1] * (act.dim() - 2))
    # Summed in float32 whatever the activation dtype: bfloat16 cannot even count past 256 exactly.
    return ((act.float() * keep).sum(1) / keep.sum(1)).to(act.dtype)


@torch.inference_mode()
def capture_batch(model, texts: list[str], sites: list[str], positions: str = "last",
                  max_length: int | None = None, dtype: torch.dtype | None = None) -> Activations:
    """Activations of one batch (see `capture`), on the CPU."""
    batch = model.tokenize(texts, max_length=max_length)
    mask = batch["attention_mask"]
    bos = model.tokenizer.bos_token_id
    # Skip BOS in means unless the text is BOS alone.
    skip_first = (batch["input_ids"][:, 0] == bos) & (mask.sum(1) > 1) if bos is not None else torch.zeros_like(mask[:, 0], dtype=torch.bool)
    cache = run_with_cache(model, batch["input_ids"], mask, sites=sites)
    seen = {name: _reduce(act, mask.to(act.device), positions, skip_first.to(act.device)).to("cpu", dtype or act.dtype)
            for name, act in cache.acts.items()}
    for name, act in seen.items():
        if not torch.isfinite(act).all():
            raise FloatingPointError(
                f"Site '{name}' has NaN/inf activations for texts {texts[:2]}...; the model may "
                "overflow in this dtype: load it with dtype=torch.float32."
            )
    return Activations({s: seen[s] for s in sites}, mask.sum(1).cpu(), positions)


def _texts_digest(texts: list[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def capture(model, texts, sites, positions: str = "last", batch_size: int = 16,
            out: str | Path | None = None, *, max_length: int | None = None,
            dtype: torch.dtype | None = None, shard_index: int = 0, num_shards: int = 1,
            progress: bool = True) -> Activations | Path:
    """Capture activations at `sites` (TransformerLens hook names) for each text.

    positions: "last" (each text's last token), "mean" (over its tokens, excluding padding
    and BOS) or "all" (every token, concatenated; see `Activations`). The forward pass stops
    after the deepest site, so no later block and no unembedding is computed.
    With `out`, each batch is written as a safetensors shard with a `manifest.json` and the
    directory is returned (read it with `load_activations` or `iter_shards`): no more than one
    batch is held in memory, and a restarted run with the same arguments resumes after the
    last complete shard. With
    `num_shards > 1`, this call captures only contiguous part `shard_index` of the texts (for
    several processes writing into one directory; merge with `metalens.merge_manifests`).
    """
    texts = _check_texts(texts)
    names = [s.name for s in resolve_sites(model, sites)]
    if any(n.endswith("hook_pattern") for n in names):
        raise ValueError("capture() does not store attention patterns (ragged [head, q, k]); read them with metalens.hooks.")
    if positions not in POSITIONS:
        raise ValueError(f"positions must be one of {POSITIONS}, not '{positions}'.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, not {batch_size}.")
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"shard_index must be in 0..{num_shards - 1}, not {shard_index}.")
    start = shard_index * len(texts) // num_shards
    stop = (shard_index + 1) * len(texts) // num_shards
    starts = list(range(start, stop, batch_size))
    writer = None
    if out is not None:
        config = {
            **model.metadata(),
            "sites": names, "positions": positions, "batch_size": batch_size,
            "max_length": max_length, "store_dtype": str(dtype or model.dtype).removeprefix("torch."),
            "n_texts": len(texts), "texts_sha256": _texts_digest(texts),
            "shard_index": shard_index, "num_shards": num_shards, "text_range": [start, stop],
        }
        writer = ShardWriter(out, config)
    parts = []
    bar = tqdm(total=stop - start, desc=f"capture {model.name}", unit="text", disable=not progress)
    for k, begin in enumerate(starts):
        end = min(begin + batch_size, stop)
        if writer is not None and writer.done(k):
            bar.update(end - begin)
            continue
        acts = capture_batch(model, texts[begin:end], names, positions, max_length, dtype)
        if writer is None:
            parts.append(acts)
        else:
            writer.write(k, begin, acts)
        bar.update(end - begin)
    bar.close()
    if writer is not None:
        writer.finish()
        return Path(out)
    result = concat(parts)
    result.metadata = {**model.metadata(), "sites": names}
    return result

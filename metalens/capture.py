"""`capture`: run a model over texts in batches and keep the activations at chosen sites."""
from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from metalens.activations import POSITIONS, Activations, concat
from metalens.forward import run_with_cache
from metalens.sites import resolve_site, resolve_sites
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


def _reduce(act: Tensor, mask: Tensor, positions: str, skip_first: Tensor | None) -> Tensor:
    """act [batch, pos, ...], mask [batch, pos] -> [batch, ...] or [n_tokens, ...]; skip_first [batch]
    (positions "mean" only): leave out each such row's first token."""
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


def feature_keys(sae, top_k: int | None = None) -> list[str]:
    """The keys under which `capture(..., sae=sae)` stores features: `SITE.features` [n, d_sae], or with
    `top_k`, `SITE.feature_indices` (int64) and `SITE.feature_values` [n, top_k] (largest first)."""
    if top_k is None:
        return [f"{sae.site}.features"]
    return [f"{sae.site}.feature_indices", f"{sae.site}.feature_values"]


def _encode(sae, act: Tensor, top_k: int | None) -> dict[str, Tensor]:
    """act [batch, pos, ...] at the SAE's site -> feature tensors [batch, pos, d_sae or top_k] by key."""
    flat = act.reshape(*act.shape[:2], -1)  # per-head sites flatten to d_in, as the SAE reads them
    if flat.shape[-1] != sae.d_in:
        raise ValueError(f"The activation at {sae.site} has width {flat.shape[-1]}, the SAE's d_in is {sae.d_in}: "
                         "it was trained on another site or model.")
    f = sae.encode(flat.to(sae.W_enc.device, sae.W_enc.dtype))  # [batch, pos, d_sae]
    if top_k is None:
        return dict(zip(feature_keys(sae), [f]))
    top = f.topk(top_k, dim=-1)  # [batch, pos, top_k]
    return dict(zip(feature_keys(sae, top_k), [top.indices, top.values]))


@torch.inference_mode()
def capture_batch(model, texts: list[str], sites: list[str], positions: str = "last",
                  max_length: int | None = None, dtype: torch.dtype | None = None, *,
                  sae=None, feature_top_k: int | None = None) -> Activations:
    """Activations of one batch (see `capture`), on the CPU."""
    batch = model.tokenize(texts, max_length=max_length)
    mask = batch["attention_mask"]
    bos = model.tokenizer.bos_token_id
    skip_first = None  # means skip BOS unless the text is BOS alone; "last" and "all" need no such mask
    if positions == "mean":
        skip_first = ((batch["input_ids"][:, 0] == bos) & (mask.sum(1) > 1) if bos is not None
                      else torch.zeros_like(mask[:, 0], dtype=torch.bool))
    read = sites if sae is None or sae.site in sites else [*sites, sae.site]
    cache = run_with_cache(model, batch["input_ids"], mask, sites=read)
    found = {name: cache.acts[name] for name in sites}
    if sae is not None:  # encoded here, batch by batch: the site's activations never outlive this batch
        found.update(_encode(sae, cache.acts[sae.site], feature_top_k))
    reduced = {}  # reduced and cast where the activations are; copied to the host once, below
    for name, act in found.items():
        keep = dtype if act.is_floating_point() else None  # feature indices stay integers
        first = None if skip_first is None else skip_first.to(act.device)
        reduced[name] = _reduce(act, mask.to(act.device), positions, first).to(keep or act.dtype)
    floats = [name for name, act in reduced.items() if act.is_floating_point()]
    if floats:  # checked where the activations are, read back with them: one wait per batch
        reduced[_FINITE] = torch.stack([torch.isfinite(reduced[name]).all() for name in floats])  # [n_floats]
    seen = _to_host(reduced)
    finite = seen.pop(_FINITE).tolist() if floats else []
    bad = [name for name, ok in zip(floats, finite) if not ok]
    if bad:
        raise FloatingPointError(
            f"Site '{bad[0]}' has NaN/inf activations for texts {texts[:2]}...; the model may "
            "overflow in this dtype: load it with dtype=torch.float32."
        )
    return Activations(seen, mask.sum(1).cpu(), positions)


_FINITE = "\0finite"  # never a site name


def _to_host(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """The tensors on the CPU. From a GPU: into pinned buffers, every copy queued before one wait for all
    (no sync per tensor); CPU tensors are returned as they are."""
    on_gpu = [t.device for t in tensors.values() if t.device.type == "cuda"]
    if not on_gpu:
        return {name: t.to("cpu") for name, t in tensors.items()}
    host = {name: torch.empty(t.shape, dtype=t.dtype, pin_memory=True).copy_(t, non_blocking=True)
            if t.device.type == "cuda" else t for name, t in tensors.items()}
    for device in set(on_gpu):
        torch.cuda.current_stream(device).synchronize()
    return host


def _texts_digest(texts: list[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")
    return digest.hexdigest()


# Sites as wide as the residual stream, whose width is known before any forward pass.
RESIDUAL_WIDTH = ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_mlp_in", "hook_attn_out",
                  "hook_mlp_out", "hook_embed", "ln_final.hook_normalized")


def _check_sae(model, sae, sites, positions: str, top_k: int | None) -> list[str]:
    """The sites list (possibly empty) after refusing an SAE that cannot be read here."""
    if sae.site is None:
        raise ValueError("This SAE names no site: set sae.site to the TransformerLens hook it was trained on.")
    resolve_site(model, sae.site)  # a site this model lacks is refused with the valid names
    if sae.site.endswith(RESIDUAL_WIDTH) and sae.d_in != model.d_model:  # caught before any shard is written
        raise ValueError(f"The activation at {sae.site} has width {model.d_model}, the SAE's d_in is {sae.d_in}: "
                         "it was trained on another site or model.")
    if top_k is not None:
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= sae.d_sae:
            raise ValueError(f"feature_top_k must be an integer in 1..{sae.d_sae} (the SAE's width), not {top_k!r}.")
        if positions == "mean":
            raise ValueError("feature_top_k keeps each token's largest features; a mean over tokens has no such "
                             "tokens: use positions='all' or 'last', or drop feature_top_k.")
    return [sites] if isinstance(sites, str) else list(sites or [])


def _sae_digest(sae) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(sae.tensors().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def capture(model, texts, sites, positions: str = "last", batch_size: int = 16,
            out: str | Path | None = None, *, max_length: int | None = None,
            dtype: torch.dtype | None = None, shard_index: int = 0, num_shards: int = 1,
            progress: bool = True, sae=None, feature_top_k: int | None = None) -> Activations | Path:
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

    sae: a `metalens.sae.SAE`; its feature activations at `sae.site` are stored too, under
    `feature_keys(sae, feature_top_k)` (`SITE.features` [n, d_sae]; with `feature_top_k`, only
    each token's largest k as `SITE.feature_indices` / `SITE.feature_values` [n, k], which keeps
    shards small). Each batch is encoded as it is captured, so the site's activations are held
    for one batch only; `sites` may then be empty (features alone).
    """
    texts = _check_texts(texts)
    if sae is not None:
        sites = _check_sae(model, sae, sites, positions, feature_top_k)
    elif feature_top_k is not None:
        raise ValueError("feature_top_k needs an SAE: pass sae=... (a metalens.sae.SAE) too.")
    names = [s.name for s in resolve_sites(model, sites)] if sites or sae is None else []
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
        if sae is not None:  # another dictionary or k is another capture: the store refuses to mix them
            config["sae"] = {"site": sae.site, "d_sae": sae.d_sae, "architecture": sae.architecture,
                             "weights_sha256": _sae_digest(sae), "feature_top_k": feature_top_k}
        writer = ShardWriter(out, config)
    parts = []
    bar = tqdm(total=stop - start, desc=f"capture {model.name}", unit="text", disable=not progress)
    try:
        for k, begin in enumerate(starts):
            end = min(begin + batch_size, stop)
            if writer is not None and writer.done(k):
                bar.update(end - begin)
                continue
            acts = capture_batch(model, texts[begin:end], names, positions, max_length, dtype,
                                 sae=sae, feature_top_k=feature_top_k)
            if writer is None:
                parts.append(acts)
            else:
                writer.write(k, begin, acts)  # written in the background while the next batch runs
            bar.update(end - begin)
    except BaseException:  # interrupted or failed: keep the batch being written, so a rerun resumes after it
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.flush()
        raise
    bar.close()
    if writer is not None:
        writer.finish()
        return Path(out)
    result = concat(parts)
    result.metadata = {**model.metadata(), "sites": names}
    if sae is not None:
        result.metadata["features"] = feature_keys(sae, feature_top_k)
    return result

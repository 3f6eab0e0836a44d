"""The community's dictionary files, read and written without their libraries.

SAELens (`cfg.json` + `sae_weights.safetensors`, its 6.x layout and the older flat configs),
Gemma Scope 2 (`params.safetensors` with lowercase `w_enc`/`w_dec`, an optional `config.json`,
folders named `resid_post/layer_L_width_W_l0_S`, `attn_out/...`, `mlp_out/...`,
`transcoder/...`) and Gemma Scope 1 (`params.npz`). Site names are TransformerLens hook names.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from metalens.artifact import read_json
from metalens.sae.dictionary import ARCHITECTURES, SAE, check_sae

SAELENS_CFG = "cfg.json"
SAELENS_WEIGHTS = "sae_weights.safetensors"
GEMMA_SCOPE_2_WEIGHTS = "params.safetensors"
GEMMA_SCOPE_1_WEIGHTS = "params.npz"
# SAELens' 6.x config layout, which `save_saelens` writes; SAELens reads older configs by another path.
SAELENS_LAYOUT_VERSION = "6.0.0"
# SAELens' architecture names -> (metalens architecture, is a transcoder, has a skip connection)
SAELENS_ARCHITECTURES = {
    "standard": ("standard", False, False),
    "topk": ("topk", False, False),
    "jumprelu": ("jumprelu", False, False),
    "transcoder": ("standard", True, False),
    "skip_transcoder": ("standard", True, True),
    "jumprelu_transcoder": ("jumprelu", True, False),
    "jumprelu_skip_transcoder": ("jumprelu", True, True),
}
# Gemma Scope 2's HF module names -> TransformerLens hook names (as SAELens maps them).
_GEMMA_HOOKS = [
    (re.compile(r"model\.layers\.(\d+)\.output$"), "blocks.{}.hook_resid_post"),
    (re.compile(r"model\.layers\.(\d+)\.self_attn\.o_proj\.input$"), "blocks.{}.attn.hook_z"),
    (re.compile(r"model\.layers\.(\d+)\.post_feedforward_layernorm\.output$"), "blocks.{}.hook_mlp_out"),
    (re.compile(r"model\.layers\.(\d+)\.pre_feedforward_layernorm\.output$"), "blocks.{}.hook_mlp_in"),
]
_GEMMA_FOLDERS = {"resid_post": "hook_resid_post", "attn_out": "attn.hook_z", "mlp_out": "hook_mlp_out"}


def _read_tensors(file: Path, fix: str) -> dict[str, Tensor]:
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{file} cannot be read ({err}): it is truncated or corrupt; {fix}") from None


def _check_shapes(file: Path, tensors: dict[str, Tensor], d_in: int, d_sae: int, d_out: int, cfg: str) -> None:
    """W_enc / W_dec / biases against the config's sizes, before any math sees them."""
    want = {"W_enc": (d_in, d_sae), "W_dec": (d_sae, d_out), "b_enc": (d_sae,), "b_dec": (d_out,)}
    for name, shape in want.items():
        if name not in tensors:
            raise ValueError(f"{file} holds no tensor '{name}' (has {sorted(tensors)}): the file is incomplete; "
                             "re-download or re-save the dictionary.")
        got = tuple(tensors[name].shape)
        if got != shape:
            raise ValueError(f"{file}: '{name}' has shape {list(got)}, but {cfg} says {list(shape)} "
                             f"(d_in {d_in}, d_sae {d_sae}, d_out {d_out}): the weights and the config belong to "
                             "different dictionaries; copy the matching pair.")


def load_sae(path, *, site: str | None = None, model: str | None = None) -> SAE:
    """An `SAE` from a folder in SAELens' or Gemma Scope's layout (detected by its files).

    site / model: override (or, for Gemma Scope 1 folders, supply) the hook name and model name.
    Weights load as float32.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"No dictionary folder at {path}: pass the folder holding {SAELENS_CFG} + "
                                f"{SAELENS_WEIGHTS} (SAELens) or {GEMMA_SCOPE_2_WEIGHTS} (Gemma Scope 2).")
    if (path / SAELENS_CFG).exists() or (path / SAELENS_WEIGHTS).exists():
        sae = _load_saelens(path)
    elif (path / GEMMA_SCOPE_2_WEIGHTS).exists():
        sae = _load_gemma_scope_2(path)
    elif (path / GEMMA_SCOPE_1_WEIGHTS).exists():
        sae = _load_gemma_scope_1(path)
    else:
        raise FileNotFoundError(f"{path} holds none of {SAELENS_CFG} + {SAELENS_WEIGHTS} (SAELens), "
                                f"{GEMMA_SCOPE_2_WEIGHTS} (Gemma Scope 2) or {GEMMA_SCOPE_1_WEIGHTS} (Gemma Scope 1): "
                                "download the whole SAE folder.")
    if site is not None:
        sae.site = site
    if model is not None:
        sae.model = model
    return sae


def _load_saelens(path: Path) -> SAE:
    cfg_file, weights = path / SAELENS_CFG, path / SAELENS_WEIGHTS
    for file in (cfg_file, weights):
        if not file.exists():
            other = weights if file is cfg_file else cfg_file
            raise FileNotFoundError(f"{file} is missing beside {other.name}: an SAELens folder needs both files; "
                                    "copy or download them together.")
    cfg = read_json(cfg_file, "SAELens config")
    meta = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
    arch_name = cfg.get("architecture", "standard")
    # Configs before SAELens 6 named TopK through the activation function.
    act_fn = cfg.get("activation_fn", cfg.get("activation_fn_str"))
    k = cfg.get("k", (cfg.get("activation_fn_kwargs") or {}).get("k"))
    if act_fn == "topk" and arch_name == "standard":
        arch_name = "topk"
    if arch_name not in SAELENS_ARCHITECTURES:
        raise ValueError(f"{cfg_file}: unknown architecture {arch_name!r}; metalens reads "
                         f"{sorted(SAELENS_ARCHITECTURES)} (its own {list(ARCHITECTURES)} and their transcoders): "
                         "load this dictionary with SAELens, or convert it.")
    architecture, transcoder, skip = SAELENS_ARCHITECTURES[arch_name]
    for key in ("d_in", "d_sae"):
        if not isinstance(cfg.get(key), int) or cfg[key] < 1:
            raise ValueError(f"{cfg_file}: '{key}' is {cfg.get(key)!r}, not a positive integer: the config is "
                             "incomplete; re-save the SAE.")
    d_in, d_sae = cfg["d_in"], cfg["d_sae"]
    d_out = cfg.get("d_out", d_in) if transcoder else d_in
    norm = cfg.get("normalize_activations") or "none"
    if isinstance(norm, bool):  # SAELens < 6 wrote a flag for the April-update scaling
        norm = "expected_average_only_in" if norm else "none"
    tensors = _read_tensors(weights, "re-download or re-save the SAE.")
    _check_shapes(weights, tensors, d_in, d_sae, d_out, cfg_file.name)
    scale = tensors.pop("scaling_factor", None)
    if scale is not None and not torch.allclose(scale, torch.ones_like(scale)):
        raise ValueError(f"{weights} holds a fine-tuning 'scaling_factor' that is not all ones; metalens does not "
                         "apply it: fold it into W_dec with SAELens and re-save.")
    skip_w = tensors.get("W_skip")
    if skip and skip_w is None:
        raise ValueError(f"{weights}: a {arch_name} needs a 'W_skip' tensor; it is missing. Re-save the transcoder.")
    extra = {k: v for k, v in meta.items() if k not in ("hook_name", "model_name", "hook_name_out")}
    try:
        return SAE(
            W_enc=tensors["W_enc"].float(), W_dec=tensors["W_dec"].float(), b_enc=tensors["b_enc"].float(),
            b_dec=tensors["b_dec"].float(), architecture=architecture,
            site=meta.get("hook_name", cfg.get("hook_name", cfg.get("hook_point"))),
            model=meta.get("model_name", cfg.get("model_name")),
            k=k if architecture == "topk" else None,
            threshold=tensors["threshold"].float() if "threshold" in tensors else None,
            # A transcoder config that names no output hook still loads; splicing it then asks for the site.
            out_site=(meta.get("hook_name_out", cfg.get("hook_name_out")) or "unknown") if transcoder else None,
            # SAELens stores the skip matrix as [d_out, d_in]; metalens keeps x @ W_skip's [d_in, d_out].
            W_skip=skip_w.float().T.contiguous() if skip_w is not None else None,
            apply_b_dec_to_input=bool(cfg.get("apply_b_dec_to_input", not transcoder)),
            normalize_activations=norm,
            rescale_acts_by_decoder_norm=bool(cfg.get("rescale_acts_by_decoder_norm", False)),
            metadata={"format": "saelens", **extra},
        )
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def _gemma_site(raw: dict, key: str) -> str | None:
    """The TransformerLens hook name for Gemma Scope config key `key` (an HF module path), if it maps."""
    hf_name = raw.get(key)
    for pattern, hook in _GEMMA_HOOKS:
        match = pattern.search(hf_name or "")
        if match:
            return hook.format(match.group(1))
    return None


def _gemma_folder_sites(path: Path) -> tuple[str | None, str | None]:
    """(site, out_site) from a Gemma Scope 2 folder path such as `resid_post/layer_6_width_16k_l0_small`."""
    text = str(path)
    layer = re.search(r"layer_(\d+)", path.name)
    if layer is None:
        return None, None
    L = layer.group(1)
    if "transcoder" in text or "clt" in text:
        return f"blocks.{L}.hook_mlp_in", f"blocks.{L}.hook_mlp_out"
    for folder, hook in _GEMMA_FOLDERS.items():
        if folder in text:
            return f"blocks.{L}.{hook}", None
    return None, None


def _load_gemma_scope_2(path: Path) -> SAE:
    weights = path / GEMMA_SCOPE_2_WEIGHTS
    raw = read_json(path / "config.json", "Gemma Scope config") if (path / "config.json").exists() else {}
    arch = raw.get("architecture", "jump_relu")
    if arch != "jump_relu":
        raise ValueError(f"{path / 'config.json'}: unknown architecture {arch!r}; Gemma Scope 2 releases JumpReLU "
                         "('jump_relu') dictionaries only.")
    tensors = _read_tensors(weights, "re-download it.")
    if "w_enc" not in tensors or tensors["w_enc"].dim() != 2:
        raise ValueError(f"{weights} holds no matrix 'w_enc' (has {sorted(tensors)}): is it a Gemma Scope 2 file?")
    renamed = {"W_enc": tensors["w_enc"], "W_dec": tensors.get("w_dec"), "b_enc": tensors.get("b_enc"),
               "b_dec": tensors.get("b_dec")}
    renamed = {k: v for k, v in renamed.items() if v is not None}
    d_in, d_sae = renamed["W_enc"].shape
    d_out = renamed["W_dec"].shape[-1] if "W_dec" in renamed else d_in
    _check_shapes(weights, renamed, d_in, d_sae, d_out, "w_enc")
    if "threshold" not in tensors:
        raise ValueError(f"{weights} holds no 'threshold': a Gemma Scope JumpReLU needs it; re-download the file.")
    folder_site, folder_out = _gemma_folder_sites(path)
    site = _gemma_site(raw, "hf_hook_point_in") or folder_site
    out_site = _gemma_site(raw, "hf_hook_point_out") or folder_out
    skip = tensors.get("affine_skip_connection")  # stored [d_in, d_out], as metalens keeps it
    try:
        return SAE(
            W_enc=renamed["W_enc"].float(), W_dec=renamed["W_dec"].float(), b_enc=renamed["b_enc"].float(),
            b_dec=renamed["b_dec"].float(), architecture="jumprelu", site=site, model=raw.get("model_name"),
            threshold=tensors["threshold"].float(), out_site=out_site if out_site != site else None,
            W_skip=skip.float() if skip is not None else None, apply_b_dec_to_input=False,
            metadata={"format": "gemma-scope-2", **{k: v for k, v in raw.items() if k != "model_name"}},
        )
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def _load_gemma_scope_1(path: Path) -> SAE:
    import numpy as np

    weights = path / GEMMA_SCOPE_1_WEIGHTS
    try:
        with np.load(weights) as npz:
            tensors = {k: torch.from_numpy(npz[k]).float() for k in npz.files}
    except (OSError, ValueError) as err:
        raise ValueError(f"{weights} cannot be read ({err}): re-download it.") from None
    if "W_enc" not in tensors or tensors["W_enc"].dim() != 2:
        raise ValueError(f"{weights} holds no matrix 'W_enc' (has {sorted(tensors)}): is it a Gemma Scope file?")
    d_in, d_sae = tensors["W_enc"].shape
    _check_shapes(weights, tensors, d_in, d_sae, d_in, "W_enc")
    try:
        return SAE(W_enc=tensors["W_enc"], W_dec=tensors["W_dec"], b_enc=tensors["b_enc"], b_dec=tensors["b_dec"],
                   architecture="jumprelu", threshold=tensors.get("threshold"), apply_b_dec_to_input=False,
                   metadata={"format": "gemma-scope"})
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def saelens_config(sae: SAE) -> dict:
    """The `cfg.json` SAELens 6 reads for `sae`."""
    arch = sae.architecture
    if sae.is_transcoder:
        if arch == "topk":
            raise ValueError("SAELens has no TopK transcoder architecture: save this transcoder another way.")
        arch = {"standard": "transcoder", "jumprelu": "jumprelu_transcoder"}[arch]
        if sae.W_skip is not None:
            arch = arch.replace("transcoder", "skip_transcoder")
    elif sae.W_skip is not None:
        raise ValueError("Only transcoders carry W_skip: set out_site, or drop the skip matrix.")
    metadata = {**{k: v for k, v in sae.metadata.items() if k != "format"},
                "sae_lens_version": SAELENS_LAYOUT_VERSION, "sae_lens_training_version": None,
                "model_name": sae.model, "hook_name": sae.site, "hook_head_index": None}
    if sae.is_transcoder:
        metadata["hook_name_out"] = sae.out_site
    cfg = {
        "architecture": arch, "d_in": sae.d_in, "d_sae": sae.d_sae, "dtype": "float32", "device": "cpu",
        "apply_b_dec_to_input": sae.apply_b_dec_to_input, "normalize_activations": sae.normalize_activations,
        "reshape_activations": "hook_z" if (sae.site or "").endswith("hook_z") else "none",
        "metadata": metadata,
    }
    if sae.architecture == "topk":
        cfg.update(k=sae.k, rescale_acts_by_decoder_norm=sae.rescale_acts_by_decoder_norm)
    if sae.is_transcoder:
        cfg["d_out"] = sae.d_out
    return cfg


def save_saelens(sae: SAE, path) -> Path:
    """Write `path/cfg.json` + `path/sae_weights.safetensors` in SAELens 6's layout (float32); returns `path`."""
    check_sae(sae)
    cfg = saelens_config(sae)
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in sae.tensors().items()}
    if "W_skip" in tensors:
        tensors["W_skip"] = tensors["W_skip"].T.contiguous()  # SAELens keeps [d_out, d_in]
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path / SAELENS_WEIGHTS))
    (path / SAELENS_CFG).write_text(json.dumps(cfg, indent=2, default=str))
    return path

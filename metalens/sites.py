"""Hook sites: TransformerLens hook names resolved to the HF modules that compute them."""
from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

# Order of the sites inside one block, in the order the forward pass computes them.
BLOCK_SITES = [
    "hook_resid_pre",
    "attn.hook_q",
    "attn.hook_k",
    "attn.hook_v",
    "attn.hook_pattern",
    "attn.hook_z",
    "hook_attn_out",
    "hook_resid_mid",
    "hook_mlp_in",
    "mlp.hook_post",
    "hook_mlp_out",
    "hook_resid_post",
]
EMBED = "hook_embed"  # token embeddings as the blocks see them (gemma's sqrt(d_model) scale included)
FINAL_NORM = "ln_final.hook_normalized"  # the final norm's output: the unembedding's input
GLOBAL_SITES = [EMBED, FINAL_NORM]
_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.(.+)$")


def resid_pre(layer: int) -> str:
    """Residual stream entering block `layer`: `blocks.L.hook_resid_pre`."""
    return f"blocks.{layer}.hook_resid_pre"


def resid_mid(layer: int) -> str:
    """Residual stream between attention and MLP of block `layer`."""
    return f"blocks.{layer}.hook_resid_mid"


def resid_post(layer: int) -> str:
    """Residual stream leaving block `layer`."""
    return f"blocks.{layer}.hook_resid_post"


def attn_out(layer: int) -> str:
    """Attention branch's write to the residual stream in block `layer`."""
    return f"blocks.{layer}.hook_attn_out"


def mlp_out(layer: int) -> str:
    """MLP branch's write to the residual stream in block `layer`."""
    return f"blocks.{layer}.hook_mlp_out"


def mlp_in(layer: int) -> str:
    """The MLP's input after its pre-norm in block `layer` (where Gemma Scope transcoders read).

    TransformerLens' bridge calls the same tensor `blocks.L.mlp.hook_in` (`ln2.hook_out`).
    """
    return f"blocks.{layer}.hook_mlp_in"


def mlp_post(layer: int) -> str:
    """MLP hidden activations (the down projection's input) in block `layer`."""
    return f"blocks.{layer}.mlp.hook_post"


def attn_q(layer: int) -> str:
    """Per-head queries `[batch, pos, head, d_head]` in block `layer`."""
    return f"blocks.{layer}.attn.hook_q"


def attn_k(layer: int) -> str:
    """Per-KV-head keys `[batch, pos, kv_head, d_head]` in block `layer`."""
    return f"blocks.{layer}.attn.hook_k"


def attn_v(layer: int) -> str:
    """Per-KV-head values `[batch, pos, kv_head, d_head]` in block `layer`."""
    return f"blocks.{layer}.attn.hook_v"


def attn_z(layer: int) -> str:
    """Per-head attention outputs before o_proj `[batch, pos, head, d_head]` in block `layer`."""
    return f"blocks.{layer}.attn.hook_z"


def attn_pattern(layer: int) -> str:
    """Attention probabilities `[batch, head, q_pos, k_pos]` in block `layer` (hooks only)."""
    return f"blocks.{layer}.attn.hook_pattern"


@dataclass(frozen=True)
class Site:
    """A resolved hook site: which module, which of its tensors, and how to view it."""

    name: str
    module: nn.Module
    when: str  # "pre": the module's first input; "out": its output (first tensor of a tuple)
    output_index: int  # which element of a tuple output ("out" sites)
    heads: int | None  # split the last axis into [heads, d_head] for per-head sites
    order: tuple[int, int]  # (block, stage): later sites have larger keys
    stop_module: nn.Module  # a forward hook here ends the pass right after this site


def site_names(model) -> str:
    """Human-readable list of valid site names for `model`, used in error messages."""
    inner = "|".join(BLOCK_SITES)
    return (
        f"blocks.{{0..{model.n_layers - 1}}}.{{{inner}}}, " + ", ".join(GLOBAL_SITES)
    )


def _unknown(model, name: str, why: str) -> ValueError:
    return ValueError(f"Unknown site '{name}': {why}. Valid site names: {site_names(model)}")


def resolve_site(model, name: str) -> Site:
    """Map a TransformerLens hook name to the module that computes it in `model.hf`."""
    base = model.hf.model
    if not isinstance(name, str):
        raise TypeError(f"Site names are strings such as {resid_post(0)!r}, not {type(name).__name__}.")
    if name == EMBED:
        embed = base.embed_tokens
        return Site(name, embed, "out", 0, None, (-1, 0), embed)
    if name == FINAL_NORM:
        return Site(name, base.norm, "out", 0, None, (model.n_layers, 0), base.norm)
    match = _BLOCK_RE.match(name)
    if match is None:
        raise _unknown(model, name, "not of the form blocks.L.<hook>")
    layer, hook = int(match.group(1)), match.group(2)
    if layer >= model.n_layers:
        raise _unknown(model, name, f"{model.name} has blocks 0-{model.n_layers - 1}")
    if hook not in BLOCK_SITES:
        raise _unknown(model, name, f"'{hook}' is not a block hook")
    block = model.layers[layer]
    attn, mlp = block.self_attn, block.mlp
    gemma_style = hasattr(block, "pre_feedforward_layernorm")  # norms before *and* after
    order = (layer, BLOCK_SITES.index(hook))

    def site(module, when, index=0, heads=None):
        return Site(name, module, when, index, heads, order, block)

    if hook == "hook_resid_pre":
        return site(block, "pre")
    if hook == "hook_resid_post":
        return site(block, "out")
    if hook == "hook_resid_mid":
        return site(block.pre_feedforward_layernorm if gemma_style else block.post_attention_layernorm, "pre")
    if hook == "hook_mlp_in":
        return site(block.pre_feedforward_layernorm if gemma_style else block.post_attention_layernorm, "out")
    if hook == "hook_attn_out":
        return site(block.post_attention_layernorm, "out") if gemma_style else site(attn, "out")
    if hook == "hook_mlp_out":
        return site(block.post_feedforward_layernorm, "out") if gemma_style else site(mlp, "out")
    if hook == "mlp.hook_post":
        return site(mlp.down_proj, "pre")
    if hook == "attn.hook_z":
        return site(attn.o_proj, "pre", heads=model.n_heads)
    if hook == "attn.hook_pattern":
        return site(attn, "out", index=1)
    proj = {"attn.hook_q": attn.q_proj, "attn.hook_k": attn.k_proj, "attn.hook_v": attn.v_proj}[hook]
    return site(proj, "out", heads=model.n_heads if hook == "attn.hook_q" else model.n_kv_heads)


def resolve_sites(model, names) -> list[Site]:
    """Resolve one name or a list; raises on an empty list or a bad name."""
    if isinstance(names, str):
        names = [names]
    names = list(names)
    if not names:
        raise ValueError(f"No sites given. Valid site names: {site_names(model)}")
    return [resolve_site(model, n) for n in names]

"""Attention patterns of chosen heads on one prompt, and a token-labelled heatmap of each."""
from __future__ import annotations

import re

from torch import Tensor

import metalens
from metalens.sites import attn_pattern

_HEAD = re.compile(r"^[Ll]?(\d+)\.[Hh]?(\d+)$")
HEAD_FORMAT = "'L.H' or 'L{layer}.H{head}', e.g. '5.1' or 'L11.H2'"


def _range(model) -> str:
    return f"{model.name} has layers 0-{model.n_layers - 1} and heads 0-{model.n_heads - 1}"


def check_heads(model, heads) -> list[tuple[int, int]]:
    """`heads` as (layer, head) int pairs, or raise naming the model's valid range."""
    out = []
    for layer, head in heads:
        if not (0 <= int(layer) < model.n_layers and 0 <= int(head) < model.n_heads):
            raise ValueError(f"Head L{layer}.H{head} is out of range: {_range(model)}.")
        out.append((int(layer), int(head)))
    return out


def parse_heads(specs, model=None) -> list[tuple[int, int]]:
    """[(layer, head)] from specs such as ["5.1", "L11.H2"] (a single string may list them with commas).

    With `model`, each head is also checked against its layers and heads.
    """
    if isinstance(specs, str):
        specs = [s for s in re.split(r"[,\s]+", specs) if s]
    heads = []
    for spec in specs:
        match = _HEAD.match(str(spec).strip())
        if match is None:
            where = f" ({_range(model)})" if model is not None else ""
            raise ValueError(f"Bad head '{spec}': write heads as {HEAD_FORMAT}{where}.")
        heads.append((int(match[1]), int(match[2])))
    return check_heads(model, heads) if model is not None else heads


def attention_patterns(model, prompt: str, heads) -> tuple[list[str], dict[tuple[int, int], Tensor]]:
    """(prompt tokens, {(layer, head): pattern [query_pos, key_pos]}) from one forward pass."""
    heads = check_heads(model, heads)
    ids = model.tokenize([prompt])["input_ids"]
    sites = sorted({attn_pattern(layer) for layer, _ in heads})
    cache = metalens.run_with_cache(model, ids, sites=sites)  # [batch, head, q_pos, k_pos] per layer
    tokens = [model.tokenizer.decode([i]) for i in ids[0].tolist()]
    return tokens, {(l, h): cache[attn_pattern(l)][0, h].float().cpu() for l, h in heads}


def attention_heatmap(tokens: list[str], pattern: Tensor, title: str = ""):
    """Query x key heatmap of one head's pattern, tokens on both axes (first query at the top)."""
    import plotly.graph_objects as go

    n = len(tokens)
    if tuple(pattern.shape) != (n, n):
        raise ValueError(f"Pattern has shape {tuple(pattern.shape)} but there are {n} tokens: expected ({n}, {n}).")
    ticks = list(range(n))
    fig = go.Figure(go.Heatmap(
        z=pattern.tolist(), x=ticks, y=ticks, colorscale="Blues", zmin=0, zmax=1,
        customdata=[[[tokens[q], tokens[k]] for k in range(n)] for q in range(n)],
        hovertemplate="query %{y} '%{customdata[0]}' -> key %{x} '%{customdata[1]}': %{z:.3f}<extra></extra>",
    ))
    # numeric axes with token labels: repeated tokens would merge on a categorical axis
    fig.update_xaxes(tickvals=ticks, ticktext=tokens, title="key", side="top")
    fig.update_yaxes(tickvals=ticks, ticktext=tokens, title="query", autorange="reversed")
    size = max(400, 28 * n + 150)
    fig.update_layout(title=title, width=size, height=size)
    return fig

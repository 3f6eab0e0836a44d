"""Edge scores to and from the EAP-IG graph JSON layout (Hanna et al. 2024, github.com/hannamw/EAP-IG).

The layout is that of EAP-IG's `Graph.to_json` / `Graph.from_json` (`src/eap/graph.py`):

    {"cfg":   {"n_layers", "n_heads", "parallel_attn_mlp": false, "d_model"},
     "nodes": {"input" | "a{L}.h{H}" | "m{L}" | "logits": {"in_graph": bool}},
     "edges": {"{up}->{down}": {"score": float, "in_graph": bool}}}

Edges into a head are named per input: `a0.h1->a2.h3<q>`, `<k>`, `<v>`. metalens scores a head's
input once, through its query, key and value paths together (`circuits.edges`), so an export
writes that combined score on all three and says so in a top-level `"metalens"` field
(`"qkv": "combined"`; EAP-IG's reader ignores extra keys). Importing such a file takes the shared
value back; importing a file with real per-input scores sums <q>, <k> and <v> into one edge
(in the graph when any of the three is). In EAP-IG's own top-n a combined head edge counts three
times: rank edges in metalens (`extract_circuit`) rather than in EAP-IG when the file came from here.

Nodes carry no "score": metalens has no separate node scores, and EAP-IG's writer omits the key
for a graph without them (its reader cannot take a null node score).
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch

from metalens.circuits.edges import EdgeScores, node_depth, node_names
from metalens.report import save_json

QKV = "qkv"
_EAP_NODE = re.compile(r"^(?:input|logits|m(\d+)|a(\d+)\.h(\d+))$")
_EAP_EDGE = re.compile(r"^(?P<up>[^-<>]+)->(?P<down>[^-<>]+?)(?:<(?P<qkv>[qkv])>)?$")


def to_eap_name(node: str) -> str:
    """EAP-IG's name of a metalens node: embed -> input, attn.L2.H3 -> a2.h3, mlp.L5 -> m5, logits."""
    if node == "embed":
        return "input"
    if node == "logits":
        return node
    kind, layer, *head = node.split(".")
    if kind == "mlp":
        return f"m{layer[1:]}"
    return f"a{layer[1:]}.h{head[0][1:]}"


def from_eap_name(node: str) -> str:
    """metalens's name of an EAP-IG node (the inverse of `to_eap_name`)."""
    match = _EAP_NODE.match(node)
    if match is None:
        raise ValueError(f"Unknown EAP-IG node '{node}': expected input, a{{L}}.h{{H}}, m{{L}} or logits.")
    mlp, attn_layer, head = match.groups()
    if node in ("input", "logits"):
        return "embed" if node == "input" else node
    return f"mlp.L{mlp}" if mlp is not None else f"attn.L{attn_layer}.H{head}"


def _shape(model_cfg) -> dict:
    keys = ("n_layers", "n_heads", "d_model")
    if isinstance(model_cfg, dict):
        missing = [k for k in keys if k not in model_cfg]
        if missing:
            raise ValueError(f"model_cfg lacks {missing}: pass the Model or a dict with {list(keys)}.")
        return {k: int(model_cfg[k]) for k in keys}
    return {k: int(getattr(model_cfg, k)) for k in keys}


def export_graph(edges: EdgeScores, circuit_edges=None, path=None, *, model_cfg) -> dict:
    """EAP-IG graph JSON (a dict, also written to `path` when given) of `edges`.

    circuit_edges: the edges in the graph, as `extract_circuit`'s (up, down, score) triples or
        (up, down) pairs; None marks no edge in the graph. A node is in the graph when one of its
        edges is; `logits` always is (as in EAP-IG).
    model_cfg: the `Model` (or a dict with n_layers, n_heads, d_model) the scores came from.
    NaN scores (edges that cannot exist) are left out; EAP-IG's graph has no such edges.
    """
    cfg = _shape(model_cfg)
    ups, downs = node_names(cfg["n_layers"], cfg["n_heads"])
    if set(edges.upstream) != set(ups) or set(edges.downstream) != set(downs):
        raise ValueError(f"These edge scores do not match a model of {cfg['n_layers']} layers x {cfg['n_heads']} "
                         "heads: pass the model_cfg of the model that produced them.")
    kept = {(e[0], e[1]) for e in circuit_edges or ()}
    unknown = {e for e in kept if e[0] not in edges.upstream or e[1] not in edges.downstream}
    if unknown:
        raise ValueError(f"circuit_edges has edges between unknown nodes: {sorted(unknown)[:5]}.")
    in_graph_nodes = {n for e in kept for n in e} | {"logits"}
    out_edges = {}
    for i, up in enumerate(edges.upstream):
        for j, down in enumerate(edges.downstream):
            score = float(edges.scores[i, j])
            if math.isnan(score):  # no such edge
                continue
            name = f"{to_eap_name(up)}->{to_eap_name(down)}"
            entry = {"score": score, "in_graph": (up, down) in kept}
            if down.startswith("attn."):
                out_edges.update({f"{name}<{x}>": dict(entry) for x in QKV})
            else:
                out_edges[name] = entry
    graph = {
        "cfg": {"n_layers": cfg["n_layers"], "n_heads": cfg["n_heads"], "parallel_attn_mlp": False,
                "d_model": cfg["d_model"]},
        "nodes": {to_eap_name(n): {"in_graph": n in in_graph_nodes} for n in ["embed", *downs]},
        "edges": out_edges,
        "metalens": {
            "qkv": "combined",
            "note": "An edge into a head is scored once through the head's query, key and value paths together "
                    "(metalens.circuits.edges): <q>, <k> and <v> carry the same combined score, not three "
                    "separate ones. Score = (upstream write, corrupted - clean) . (metric gradient at the "
                    "downstream input), averaged over EAP-IG interpolation steps.",
        },
    }
    if path is not None:
        save_json(path, graph)
    return graph


def import_graph(path_or_dict) -> tuple[EdgeScores, set[tuple[str, str]]]:
    """(EdgeScores, in-graph (up, down) edges) from an EAP-IG graph JSON file or dict.

    <q>/<k>/<v> edges into a head are summed into one edge, in the graph when any of them is; a
    file exported by metalens (`"qkv": "combined"`) gives back its one combined score. Edges the
    file lacks, or scores null or NaN, come back NaN.
    """
    data = path_or_dict
    if not isinstance(data, dict):
        data = json.loads(Path(data).read_text())
    missing = [k for k in ("cfg", "nodes", "edges") if k not in data]
    if missing:
        raise ValueError(f"Not an EAP-IG graph: missing {missing} (expected keys cfg, nodes, edges).")
    n_layers, n_heads = int(data["cfg"]["n_layers"]), int(data["cfg"]["n_heads"])
    combined = data.get("metalens", {}).get("qkv") == "combined"
    ups, downs = node_names(n_layers, n_heads)
    row, col = {n: i for i, n in enumerate(ups)}, {n: j for j, n in enumerate(downs)}
    parts: dict[tuple[str, str], list[tuple[float, bool]]] = {}
    for name, info in data["edges"].items():
        match = _EAP_EDGE.match(name)
        if match is None:
            raise ValueError(f"Bad EAP-IG edge name '{name}': expected 'up->down', with <q>/<k>/<v> into a head.")
        up, down = from_eap_name(match["up"]), from_eap_name(match["down"])
        if up not in row or down not in col or not node_depth(up) < node_depth(down):
            raise ValueError(f"Edge '{name}' does not exist in a graph of {n_layers} layers x {n_heads} heads.")
        if down.startswith("attn.") != (match["qkv"] is not None):
            raise ValueError(f"Edge '{name}': edges into a head need <q>, <k> or <v>, and only those do.")
        score = info.get("score")
        parts.setdefault((up, down), []).append((float("nan") if score is None else float(score),
                                                 bool(info.get("in_graph", False))))
    scores = torch.full((len(ups), len(downs)), float("nan"))
    in_graph = set()
    for (up, down), got in parts.items():
        values = torch.tensor([s for s, _ in got], dtype=torch.float64)
        if combined and down.startswith("attn."):
            if not torch.allclose(values, values[0].expand_as(values), equal_nan=True):
                raise ValueError(f"{up} -> {down}: a 'qkv: combined' file must give <q>, <k>, <v> one score, "
                                 f"got {values.tolist()}.")
            value = values[0]
        else:
            value = values.sum()
        scores[row[up], col[down]] = float(value)
        if any(flag for _, flag in got):
            in_graph.add((up, down))
    return EdgeScores(ups, downs, scores), in_graph

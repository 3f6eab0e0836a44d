"""Edge circuits that are actually run, and MIB-style faithfulness curves (CPR / CMD) over them.

Semantics (EAP-IG, Hanna et al. 2024; MIB, Mueller et al. 2025): the residual stream is the sum
of the node outputs (the embedding, every head, every MLP). A circuit is a set of edges
(upstream, downstream) as in `EdgeScores`; every other edge is patched to the corrupted run:

    input_v = residual at v in this run + sum over excluded u -> v of (out_u(corrupted) - out_u(this run))

where "this run" is the circuit run itself on the clean prompt: an upstream node whose own inputs
were patched passes its changed output along its kept edges. A head's input is the residual
before the block's pre-attention norm (the norm, q/k/v and attention then run on that head's own
input), an MLP's input the residual before the pre-MLP norm, the logits' input the last residual
before the final norm. A node's output is what it adds to the residual stream, as in
`edges._output_deltas`: an MLP's is `hook_mlp_out` (gemma's post-feedforward norm included). A
head's is its slice of o_proj; under gemma's post-attention RMSNorm, which normalises the sum of
the layer's heads, each head gets its o_proj slice times the norm's scale of that sum in the same
run (frozen-scale split), so the heads' outputs add up to the attention output exactly (the
`_output_deltas` linearisation does not add up, so it cannot give exact endpoints). A quirk this
leaves on gemma: a head's output also depends on the other heads of its layer, through that scale.

Every kept edge set is checked by two identities (tests): all edges kept gives the clean metric,
none kept the corrupted one.
Which edges a curve keeps at each k: `circuits.topk` (MIB's counting and rankings, and metalens' earlier one).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

import einops
import numpy as np
import torch
from torch import Tensor

from metalens.circuits.edges import EdgeScores, node_depth, node_names
from metalens.circuits.metrics import TaskBatch, metric_per_pair, prepare, task_forward
from metalens.circuits.patching import patch_heads_exact
from metalens.circuits.topk import edge_costs, helpful_sign, mib_budget, ranked_edges, top_edges
from metalens.precision import in_float32
from metalens.sites import EMBED, attn_k, attn_out, attn_v, attn_z, mlp_out, resid_mid, resid_post, resid_pre

KS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100)  # percent of edges kept, MIB's grid


@dataclass
class _Reference:
    """What every circuit run of one task shares: the batch, the clean/corrupted runs, the edge layout."""

    batch: TaskBatch
    upstream: list[str]
    downstream: list[str]
    valid: Tensor  # [n_up, n_down] bool: the edge exists (upstream before downstream)
    corrupted_out: Tensor  # [n_up, batch, pos, d_model] each upstream node's output on the corrupted run
    clean_logits: Tensor  # [batch, vocab]
    corrupted_logits: Tensor  # [batch, vocab]

    def metric(self, logits: Tensor) -> Tensor:
        """[batch] task metric of `logits` (kl against the clean run)."""
        return metric_per_pair(self.batch, logits, self.clean_logits)


def head_outputs(model, layer: int, z: Tensor) -> Tensor:
    """[head, batch, pos, d_model] what each head of `layer` adds to the residual stream, from z [b, p, h, d].

    The o_proj slice of each head; with gemma's post-attention RMSNorm, times the norm's scale of
    the heads' sum (so the heads add up to `hook_attn_out`). An o_proj bias is no head's output:
    it is the same in every run, so it cancels in the clean - corrupted differences.
    """
    block = model.layers[layer]
    o_proj = block.self_attn.o_proj
    w = einops.rearrange(o_proj.weight, "m (h d) -> h m d", h=model.n_heads)
    out = torch.einsum("bphd,hmd->hbpm", z.to(w.dtype), w)
    if hasattr(block, "pre_feedforward_layernorm"):  # gemma: norm(sum of heads) = w * sum / rms(sum)
        if o_proj.bias is not None:
            raise ValueError(f"{model.name}: an o_proj bias inside gemma's post-attention norm cannot be split "
                             "between heads; edge circuits support bias-free o_proj only.")
        norm = block.post_attention_layernorm
        total = out.sum(0).float()
        scale = torch.rsqrt(total.pow(2).mean(-1, keepdim=True) + norm.eps) * (1.0 + norm.weight.float())
        out = (out.float() * scale).to(out.dtype)
    return out


def _reference(model, task) -> _Reference:
    batch = prepare(model, task)
    ups, downs = node_names(model.n_layers, model.n_heads)
    valid = torch.tensor([[node_depth(u) < node_depth(v) for v in downs] for u in ups])
    keep = [EMBED] + [s for l in range(model.n_layers) for s in (attn_z(l), mlp_out(l))]
    clean_logits, _ = task_forward(model, batch)
    corr_logits, corr = task_forward(model, batch, batch.corrupted_ids, keep=keep)
    outs = [corr[EMBED]]
    for l in range(model.n_layers):
        outs += [*head_outputs(model, l, corr[attn_z(l)]), corr[mlp_out(l)]]
    return _Reference(batch, ups, downs, valid, torch.stack(outs), clean_logits, corr_logits)


QKV = "qkv"  # the inputs of a head, MIB's <q>, <k>, <v>; slot 0, 1, 2 of a keep tensor
_INPUT = re.compile(r"^(attn\.L\d+\.H\d+)<([qkv])>$")


def _keep_matrix(ref: _Reference, edges) -> Tensor:
    """[n_up, n_down, 3] bool: which of each edge's q/k/v inputs `edges` keep (all three unless named).

    A downstream head may be named with one input, 'attn.L2.H3<v>' (MIB's edge names); other
    downstream nodes have one input, held in all three slots. Raises on an unknown or backward edge.
    """
    up_at = {n: i for i, n in enumerate(ref.upstream)}
    down_at = {n: j for j, n in enumerate(ref.downstream)}
    keep = torch.zeros(*ref.valid.shape, len(QKV), dtype=torch.bool)
    for edge in edges:
        u, v = edge[0], edge[1]  # (upstream, downstream[, score]) as from EdgeScores.top
        one = _INPUT.match(v)
        v, slots = (one.group(1), [QKV.index(one.group(2))]) if one else (v, list(range(len(QKV))))
        if u not in up_at or v not in down_at or not ref.valid[up_at[u], down_at[v]]:
            raise ValueError(f"No edge {u!r} -> {edge[1]!r}: upstream nodes are 'embed', 'attn.L{{l}}.H{{h}}', "
                             f"'mlp.L{{l}}' (here {ref.upstream[1]!r} .. {ref.upstream[-1]!r}); downstream ones the "
                             "heads (or one input of a head, 'attn.L2.H3<q>', <k>, <v>), MLPs and 'logits', in a "
                             "later layer (a head feeds the MLP of its own layer).")
        keep[up_at[u], down_at[v], slots] = True
    return keep


def _circuit_logits(model, ref: _Reference, keep: Tensor) -> Tensor:
    """[batch, vocab] last-position logits of the run in which only the `keep` edges carry the clean run.

    keep: [n_up, n_down] (a head's q, k and v inputs kept or cut together) or [n_up, n_down, 3]
    (per input, see `_keep_matrix`). One pass through the core's `run_with_cache` on the batch
    repeated once per head (replica r computes head r): at each block input every replica r gets
    head r's own input, the attention runs as usual, and the z edit keeps head r's z from replica
    r. A head whose q, k and v inputs differ gets two more replicas, fed its key's and its value's
    input; the k and v edits hand those to replica r (the query's). The MLP input and the block
    output are then set to the same (true) values in every replica. Cost: one forward pass at
    (n_heads + 2 x heads with split inputs) x the batch, plus the excluded upstream differences.
    """
    batch, H, L = ref.batch, model.n_heads, model.n_layers
    B = batch.clean_ids.shape[0]
    if keep.dim() == 2:
        keep = keep[..., None].expand(-1, -1, len(QKV))
    excluded = ref.valid[..., None] & ~keep  # [n_up, n_down, 3]
    down_at = {n: j for j, n in enumerate(ref.downstream)}
    # (layer, head, input) of each extra replica: the k and v inputs of heads whose inputs differ
    extra = [(l, h, x) for l in range(L) for h in range(H)
             if not (excluded[:, down_at[f"attn.L{l}.H{h}"]] == excluded[:, down_at[f"attn.L{l}.H{h}"], :1]).all()
             for x in (1, 2)]
    R = H + len(extra)
    group = H // model.n_kv_heads  # query heads per key/value head
    live = torch.zeros_like(ref.corrupted_out)  # each upstream node's output in this run, filled as the pass goes
    state: dict[str, Tensor] = {}

    def correction(node: str, slot: int = 0) -> Tensor | float:
        idx = excluded[:, down_at[node], slot].nonzero().flatten().to(live.device)
        if len(idx) == 0:
            return 0.0
        return (ref.corrupted_out[idx] - live[idx]).sum(0)  # [batch, pos, d_model]

    def replicate(x: Tensor) -> Tensor:  # [b, ...] -> [(r b), ...]
        return x.repeat(R, *([1] * (x.dim() - 1)))

    def block_input(l):
        def fn(x):  # [(r b), pos, d_model]: every replica holds this run's residual
            resid = x[:B]
            if l == 0:
                live[0] = resid
            state["resid"] = resid
            return torch.cat([resid + correction(f"attn.L{l}.H{h}") for h in range(H)]
                             + [resid + correction(f"attn.L{el}.H{h}", slot) if el == l else resid
                                for el, h, slot in extra])
        return fn

    def own_input(l, slot):
        def fn(t):  # [(r b), pos, kv_head, d_head]: replica r's key/value head takes the extra replica's
            t = t.clone()
            for e, (el, h, x) in enumerate(extra):
                if el == l and x == slot:
                    src, dst = (H + e) * B, h * B
                    t[dst:dst + B, :, h // group] = t[src:src + B, :, h // group]
            return t
        return fn

    def own_z(l):
        def fn(z):  # [(r b), pos, head, d_head]: replica r computed every head from head r's input
            zr = einops.rearrange(z[:H * B], "(r b) p h d -> r b p h d", r=H)
            heads = torch.arange(H, device=z.device)
            z_run = einops.rearrange(zr[heads, :, :, heads], "h b p d -> b p h d")
            start = 1 + l * (H + 1)
            live[start:start + H] = head_outputs(model, l, z_run).to(live.dtype)
            return replicate(z_run)
        return fn

    def record(key, l=None):
        def fn(x):
            state[key] = x[:B]
            if l is not None:
                live[(l + 1) * (H + 1)] = x[:B]
        return fn

    def mlp_input(l):
        def fn(x):  # replica r holds head r's input + attention output; the MLP reads this run's residual
            state["mid"] = state["resid"] + state["attn"]
            return replicate(state["mid"] + correction(f"mlp.L{l}"))
        return fn

    def block_output(l):
        def fn(x):
            out = state["mid"] + state["mlp"]
            return replicate(out + correction("logits") if l == L - 1 else out)
        return fn

    edits = {}
    for l in range(L):
        edits.update({resid_pre(l): block_input(l), attn_z(l): own_z(l), attn_out(l): record("attn"),
                      resid_mid(l): mlp_input(l), mlp_out(l): record("mlp", l), resid_post(l): block_output(l)})
        if any(el == l for el, _, _ in extra):
            edits.update({attn_k(l): own_input(l, 1), attn_v(l): own_input(l, 2)})
    wide = replace(batch, clean_ids=replicate(batch.clean_ids), mask=replicate(batch.mask), last=replicate(batch.last))
    logits, _ = task_forward(model, wide, edits=edits)
    return logits[:B]


@torch.no_grad()
def find_edge_circuit(model, task, edges) -> Tensor:
    """[batch] task metric of each pair when only `edges` carry the clean run (see the module docstring).

    edges: (upstream, downstream) pairs named as in `EdgeScores` (extra tuple items, such as the
    score in `extract_circuit`'s output, are ignored); a downstream head named with one input,
    'attn.L2.H3<q>' (<k>, <v>, as MIB names them), keeps only that input's edge, a bare head name
    all three. Computed in float32.
    """
    with in_float32(model):
        ref = _reference(model, task)
        return ref.metric(_circuit_logits(model, ref, _keep_matrix(ref, edges))).cpu()


def curve_areas(ks, faithfulness) -> tuple[float, float]:
    """(CPR, CMD): trapezoid areas under faithfulness and under |1 - faithfulness| against k/100.

    The x-axis is the fraction of edges kept, linear, over the given points only (from min(k) to
    max(k); nothing is extrapolated to 0). CPR: higher is better; CMD: lower is better (MIB).
    """
    x = np.asarray(ks, dtype=float) / 100
    y = np.asarray(faithfulness, dtype=float)
    order = np.argsort(x)
    x, y = x[order], y[order]
    return float(np.trapezoid(y, x)), float(np.trapezoid(np.abs(1 - y), x))


# name -> (ranking, counting) of the curves `_curve` runs; "metalens" is the earlier convention (the old keys)
CONVENTIONS = {"metalens": ("abs", "metalens"), "signed": ("signed", "mib"), "abs": ("abs", "mib")}


def _curve(model, ref: _Reference, scores: EdgeScores, ks) -> dict:
    if scores.upstream != ref.upstream or scores.downstream != ref.downstream:
        raise ValueError(f"Edge scores are for another model shape ({len(scores.upstream)} upstream nodes, "
                         f"{ref.upstream[-1]!r} expected last): score edges with attribute_edges on this model.")
    clean_pairs, corrupted_pairs = ref.metric(ref.clean_logits).cpu(), ref.metric(ref.corrupted_logits).cpu()
    clean, corrupted = float(clean_pairs.mean()), float(corrupted_pairs.mean())
    ks = sorted(float(k) for k in ks)
    costs = edge_costs(ref.downstream)
    runs: dict[bytes, Tensor] = {}  # one circuit pass per distinct kept set (conventions often agree)
    out = {"k": ks, "clean": clean, "corrupted": corrupted,
           "per_pair": {"clean": clean_pairs.tolist(), "corrupted": corrupted_pairs.tolist()}}
    for name, (ranking, counting) in CONVENTIONS.items():
        ranked = ranked_edges(scores, ranking, helpful_sign(ref.batch.metric))
        n_edges, n_mib, circuit = [], [], []
        for k in ks:
            kept, cost = top_edges(ranked, costs, k, counting)
            keep = torch.zeros(*ref.valid.shape, 3, dtype=torch.bool)
            for a, b, inputs in kept:
                keep[a, b, list(inputs)] = True
            key = keep.numpy().tobytes()
            if key not in runs:
                runs[key] = ref.metric(_circuit_logits(model, ref, keep)).cpu()
            n_edges.append(len(kept)), n_mib.append(cost), circuit.append(runs[key])
        means = [float(c.mean()) for c in circuit]
        faith = [(c - corrupted) / (clean - corrupted) if clean != corrupted else float("nan") for c in means]
        cpr, cmd = curve_areas(ks, faith)
        suffix = "" if name == "metalens" else f"_{name}"
        out.update({f"faithfulness{suffix}": faith, f"cpr{suffix}": cpr, f"cmd{suffix}": cmd,
                    f"n_edges{suffix}": n_edges, f"circuit{suffix}": means})
        if name != "metalens":
            out[f"n_edges_mib{suffix}"] = n_mib
        out["per_pair"][f"circuit{suffix}"] = [c.tolist() for c in circuit]
    out.update({"total_edges": len(ranked), "total_edges_mib": sum(costs[j] for _, j in ranked),
                "budget_mib": [mib_budget(k, sum(costs[j] for _, j in ranked)) for k in ks]})
    return out


@torch.no_grad()
def faithfulness_curve(model, task, scores: EdgeScores, ks=KS) -> dict:
    """MIB faithfulness curves of the top-scored edges under three conventions (see `circuits.topk`).

    At each k (percent of the edges kept, no pruning) the edge circuit is run (`find_edge_circuit`)
    and faithfulness = (circuit - corrupted) / (clean - corrupted), metrics averaged over the pairs.
    Keys, per convention (suffix):
      - "" (metalens' earlier convention, kept so older results read alike): one edge per head
        input, round(k/100 * n) edges by |score|: "faithfulness", "cpr", "cmd", "n_edges", "circuit".
      - "_signed" (MIB's CPR): MIB's counting (q, k, v separate, int(pct * n)), signed ranking:
        "faithfulness_signed", "cpr_signed", "cmd_signed", "n_edges_signed", "n_edges_mib_signed".
      - "_abs" (MIB's CMD): MIB's counting, |score| ranking: "cmd_abs", "cpr_abs", ...
    MIB reports "cpr_signed" as CPR and "cmd_abs" as CMD. Also "k", "clean", "corrupted",
    "total_edges" (metalens edges), "total_edges_mib", "budget_mib" (int(pct * n) per k) and
    "per_pair" (each pair's clean, corrupted and circuit metrics, for intervals over pairs).
    Where this still differs from MIB: a head's q, k and v edges share one (combined) score, so
    they are ranked together, q then k then v (`circuits.topk`); no pruning of edges off a path from the input to the logits (under
    this patching such edges carry the corrupted run either way, except through gemma's frozen
    norm scale, see the module docstring). Cost: 2 forward passes + up to 3 * len(ks) passes at
    n_heads x the batch (a kept set shared by conventions runs once).
    """
    with in_float32(model):
        return _curve(model, _reference(model, task), scores, ks)


@torch.no_grad()
def faithfulness_curves(model, task, methods: dict[str, EdgeScores], ks=KS) -> dict[str, dict]:
    """{method: faithfulness_curve(...)} for several methods' edge scores, sharing the clean/corrupted runs."""
    with in_float32(model):
        ref = _reference(model, task)
        return {name: _curve(model, ref, scores, ks) for name, scores in methods.items()}


def edge_scores_from_nodes(node_scores: dict[str, float], n_layers: int, n_heads: int) -> EdgeScores:
    """EdgeScores in which every edge out of a node scores that node's score (for node-level methods).

    node_scores: a score for every upstream node ('embed', 'attn.L{l}.H{h}', 'mlp.L{l}'). A curve
    then keeps whole nodes' outgoing edges in node order; within a node, edges to later nodes first.
    Clean information enters only through edges out of 'embed', so until 'embed' ranks in, such a
    circuit is the corrupted run (faithfulness 0); its exact score is the whole effect, corrupted - clean.
    """
    ups, downs = node_names(n_layers, n_heads)
    missing = [u for u in ups if u not in node_scores]
    if missing:
        raise ValueError(f"No score for upstream node(s) {missing[:5]}{'...' if len(missing) > 5 else ''}: "
                         "give every one of 'embed', the heads and the MLPs (see exact_node_scores).")
    scores = torch.tensor([[float(node_scores[u]) if node_depth(u) < node_depth(v) else float("nan") for v in downs]
                           for u in ups])
    return EdgeScores(ups, downs, scores)


@torch.no_grad()
def exact_node_scores(model, task, head_scores: Tensor | None = None) -> dict[str, float]:
    """{node: metric change when its output is patched from the corrupted run} for embed, heads and MLPs.

    head_scores: `patch_heads_exact`'s [n_layers, n_heads] when already computed (e.g. by
    `run_heads`); else computed here (one pass per head). MLPs and the embedding: one pass each.
    """
    with in_float32(model):
        batch = prepare(model, task)
        heads = head_scores if head_scores is not None else patch_heads_exact(model, task)
        clean_logits, _ = task_forward(model, batch)
        keep = [EMBED] + [mlp_out(l) for l in range(model.n_layers)]
        _, corr = task_forward(model, batch, batch.corrupted_ids, keep=keep)
        base = float(metric_per_pair(batch, clean_logits, clean_logits).mean())

        def patched(site):
            logits, _ = task_forward(model, batch, edits={site: lambda x: corr[site].to(x.dtype)})
            return float(metric_per_pair(batch, logits, clean_logits).mean()) - base

        out = {"embed": patched(EMBED)}
        for l in range(model.n_layers):
            out.update({f"attn.L{l}.H{h}": float(heads[l, h]) for h in range(model.n_heads)})
            out[f"mlp.L{l}"] = patched(mlp_out(l))
        return out


@torch.no_grad()
def exact_edge_scores(model, task, max_edges: int = 2000) -> EdgeScores:
    """Exact edge patching: each edge's score is the metric change when only it is patched to corrupted.

    One circuit pass (n_heads x the batch) per edge, so only for small models: raises above `max_edges`.
    """
    with in_float32(model):
        ref = _reference(model, task)
        n = int(ref.valid.sum())
        if n > max_edges:
            raise ValueError(f"{model.name} has {n} edges, one pass each: over max_edges={max_edges}. Use "
                             "edge_scores_from_nodes(exact_node_scores(...)) or raise max_edges.")
        clean = float(ref.metric(ref.clean_logits).mean())
        scores = torch.full(ref.valid.shape, float("nan"))
        for i, j in ref.valid.nonzero().tolist():
            keep = ref.valid.clone()
            keep[i, j] = False
            scores[i, j] = float(ref.metric(_circuit_logits(model, ref, keep)).mean()) - clean
        return EdgeScores(ref.upstream, ref.downstream, scores)


def method_edge_scores(model, task, method: str, steps: int = 5, head_scores: Tensor | None = None) -> EdgeScores:
    """Edge scores of one `run_heads` method: 'attribution' (EAP), 'ig' (EAP-IG, `steps`) or 'exact'.

    'exact' ranks edges by the exact patching score of their upstream node (`exact_node_scores`,
    reusing `head_scores` when given): exact per-edge patching costs one pass per edge.
    """
    from metalens.circuits.edges import attribute_edges

    if method == "attribution":
        return attribute_edges(model, task, steps=1)
    if method == "ig":
        return attribute_edges(model, task, steps=steps)
    if method == "exact":
        return edge_scores_from_nodes(exact_node_scores(model, task, head_scores), model.n_layers, model.n_heads)
    raise ValueError(f"Unknown method '{method}': use 'attribution', 'ig' or 'exact'.")

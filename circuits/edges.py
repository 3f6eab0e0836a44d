"""Edge attribution (EAP / EAP-IG) between heads, MLPs, the embedding and the logits.

The score of edge u -> v is (out_u(corrupted) - out_u(clean)) . dMetric/d(input of v)
(Syed et al. 2023, "Attribution Patching Outperforms Automated Circuit Discovery"), with the
gradient averaged over inputs interpolated between corrupted and clean (Hanna et al. 2024,
EAP-IG). A head's input gradient is the gradient of its own z pulled back to the block input,
so it counts only that head's query/key/value paths. A head's output change is the
linearisation of the block's attention output (gemma's post-attention norm included) in that
head's z. Faithfulness is measured at node level: heads outside the circuit take their
corrupted activations.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from metalens.circuits.metrics import TaskBatch, embeddings, last_logits, metric_value, prepare, task_forward
from metalens.circuits.patching import patch_heads, z_run
from metalens.forward import Cache
from metalens.sites import attn_out, attn_z, mlp_out, resid_mid, resid_post, resid_pre


@dataclass
class EdgeScores:
    """scores[i, j] for upstream node i -> downstream node j (NaN where no edge exists)."""

    upstream: list[str]
    downstream: list[str]
    scores: Tensor

    def top(self, k: int) -> list[tuple[str, str, float]]:
        """The k edges with the largest |score| as (upstream, downstream, score), largest first."""
        flat = self.scores.nan_to_num(0).abs().flatten()
        idx = flat.topk(min(k, int((flat > 0).sum()))).indices
        n = self.scores.shape[1]
        return [(self.upstream[i // n], self.downstream[i % n], float(self.scores[i // n, i % n])) for i in idx.tolist()]


def node_depth(node: str) -> float:
    """Where a node sits in the forward pass: embed -1, attention heads at their layer, the MLP half a
    layer later, logits at infinity; an edge u -> v exists only when node_depth(u) < node_depth(v)."""
    if node == "embed":
        return -1
    if node == "logits":
        return float("inf")
    return int(node.split(".")[1][1:]) + (0.5 if node.startswith("mlp") else 0)


def _run_capture(model, batch: TaskBatch, embeds: Tensor, grad: bool) -> tuple[Tensor, Cache]:
    """One pass keeping z, attn_out, mlp_out, the MLP-branch input, block inputs and the final residual.

    With `grad`, each kept tensor is a fresh node that only that site's consumer uses, so its
    gradient is that branch's alone (the residual skip keeps the original tensor).
    """
    keep = [site for l in range(model.n_layers)
            for site in (attn_z(l), attn_out(l), mlp_out(l), resid_mid(l), resid_pre(l))]
    keep.append(resid_post(model.n_layers - 1))
    return task_forward(model, batch, embeds=embeds.detach().requires_grad_(grad), keep=keep, grad=grad)


def node_names(L: int, H: int) -> tuple[list[str], list[str]]:
    """(upstream, downstream) node names of a model with L layers of H heads: embed, attn.Ll.Hh, mlp.Ll, logits."""
    per_layer = [[f"attn.L{l}.H{h}" for h in range(H)] + [f"mlp.L{l}"] for l in range(L)]
    body = [n for layer in per_layer for n in layer]
    return ["embed"] + body, body + ["logits"]


def _input_grads(model, batch, embeds, clean_logits) -> dict[str, Tensor]:
    """d metric / d input of every downstream node, [batch, pos, d_model] each."""
    L, H = model.n_layers, model.n_heads
    logits, st = _run_capture(model, batch, embeds, grad=True)
    out = {}
    with torch.enable_grad():
        value = metric_value(batch, logits, clean_logits)
        zs = [st[attn_z(l)] for l in range(L)]
        mids = [st[resid_mid(l)] for l in range(L)]
        g = torch.autograd.grad(value, zs + mids + [st[resid_post(L - 1)]], retain_graph=True)
        g_z, g_mid, out["logits"] = g[:L], g[L : 2 * L], g[-1]
        for l in range(L):
            out[f"mlp.L{l}"] = g_mid[l]
            for h in range(H):
                only_h = torch.zeros_like(g_z[l])
                only_h[:, :, h] = g_z[l][:, :, h]
                (out[f"attn.L{l}.H{h}"],) = torch.autograd.grad(zs[l], st[resid_pre(l)], only_h, retain_graph=True)
    return {k: v.detach() for k, v in out.items()}


def _output_deltas(model, batch, e_clean, e_corr, corr: Cache) -> dict[str, Tensor]:
    """Change of each upstream node's write to the residual stream, clean -> corrupted."""
    L, H = model.n_layers, model.n_heads
    _, st = _run_capture(model, batch, e_clean, grad=True)
    out = {"embed": (e_corr - e_clean)}
    with torch.enable_grad():
        for l in range(L):
            out[f"mlp.L{l}"] = (corr[mlp_out(l)] - st[mlp_out(l)]).detach()
            written, z = st[attn_out(l)], st[attn_z(l)]
            probe = torch.zeros_like(written, requires_grad=True)
            (vjp,) = torch.autograd.grad(written, z, probe, create_graph=True, retain_graph=True)
            dz = corr[attn_z(l)] - z.detach()
            for h in range(H):
                only_h = torch.zeros_like(dz)
                only_h[:, :, h] = dz[:, :, h]
                (jvp,) = torch.autograd.grad(vjp, probe, only_h, retain_graph=True)  # J_attn_out(z) . dz_h
                out[f"attn.L{l}.H{h}"] = jvp.detach()
    return out


def attribute_edges(model, task, steps: int = 5) -> EdgeScores:
    """EAP-IG score of every edge whose upstream node comes before its downstream node.

    `steps` = 1 is plain EAP (gradient at the clean run).
    """
    batch = prepare(model, task)
    ups, downs = node_names(model.n_layers, model.n_heads)
    e_clean, e_corr = embeddings(model, batch.clean_ids), embeddings(model, batch.corrupted_ids)
    _, corr = _run_capture(model, batch, e_corr, grad=False)
    clean_logits = last_logits(model, batch)
    alphas = [1.0] if steps == 1 else [(i + 0.5) / steps for i in range(steps)]
    grads = None
    for alpha in alphas:
        g = _input_grads(model, batch, e_corr + alpha * (e_clean - e_corr), clean_logits)
        grads = g if grads is None else {k: grads[k] + g[k] for k in g}
    mask = batch.mask[:, :, None].to(e_clean.dtype)
    deltas = _output_deltas(model, batch, e_clean, e_corr, corr)
    D = torch.stack([(deltas[u] * mask).flatten() for u in ups]).float()  # [n_up, batch*pos*d]
    G = torch.stack([(grads[v] * mask).flatten() for v in downs]).float() / len(alphas)
    scores = (D @ G.T).cpu()
    valid = torch.tensor([[node_depth(u) < node_depth(v) for v in downs] for u in ups])
    scores[~valid] = float("nan")
    return EdgeScores(ups, downs, scores)


def extract_circuit(edges: EdgeScores, k: int) -> list[tuple[str, str, float]]:
    """Top-k edges by |score|, pruned to those on a path that reaches the logits."""
    top = edges.top(k)
    alive, changed = {"logits"}, True
    while changed:  # a node stays if one of its kept edges leads to a node that stays
        changed = False
        for src, dst, _ in top:
            if dst in alive and src not in alive:
                alive.add(src)
                changed = True
    return [e for e in top if e[1] in alive]


def circuit_heads(circuit: list[tuple[str, str, float]]) -> set[tuple[int, int]]:
    """(layer, head) of every attention node in a circuit's edges."""
    heads = set()
    for src, dst, _ in circuit:
        for node in (src, dst):
            if node.startswith("attn."):
                _, l, h = node.split(".")
                heads.add((int(l[1:]), int(h[1:])))
    return heads


@torch.no_grad()
def faithfulness(model, task, heads: set[tuple[int, int]]) -> dict:
    """Metric recovered when every head outside `heads` takes its corrupted activation.

    Returns clean, corrupted and circuit metric values and
    faithfulness = (circuit - corrupted) / (clean - corrupted) (1: the circuit alone suffices).
    """
    batch = prepare(model, task)
    clean_logits = last_logits(model, batch)
    corr_logits, corr_z = z_run(model, batch, batch.corrupted_ids)
    outside = {l: [h for h in range(model.n_heads) if (l, h) not in heads] for l in range(model.n_layers)}
    circ_logits = patch_heads(model, batch, corr_z, outside)
    clean = metric_value(batch, clean_logits, clean_logits).item()
    corrupted = metric_value(batch, corr_logits, clean_logits).item()
    circuit = metric_value(batch, circ_logits, clean_logits).item()
    return {"clean": clean, "corrupted": corrupted, "circuit": circuit,
            "faithfulness": (circuit - corrupted) / (clean - corrupted) if clean != corrupted else float("nan")}

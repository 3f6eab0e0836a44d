"""Which edges a top-k % edge circuit keeps: metalens' earlier convention and MIB's.

MIB's circuit track (Mueller et al. 2025; `MIB_circuit_track/evaluation.py`
`evaluate_area_under_curve` over EAP-IG's `Graph.apply_topn`) keeps, at each fraction pct of the
grid, the top `int(pct * n_edges)` edges, where n_edges counts every edge of the graph and an
edge into an attention head is three edges (its query, key and value inputs, `a0.h1->a2.h3<q>`,
`<k>`, `<v>`). It reports CPR (area under the faithfulness curve) from the circuits ranked by
signed score, and CMD (area between the curve and 1) from those ranked by |score|
(`print_results.py` picks the `abs-False` run for CPR and the `abs-True` run for CMD).

metalens scores one edge into a head (its q, k and v paths together, `circuits.edges`), and its
circuit runs patch a head's q, k and v inputs separately (`faithfulness._circuit_logits`). MIB's
counting: an edge into a head stands for its three MIB edges, each with the edge's combined
score, ranked together in the order q, k, v; exactly `int(pct * n_mib)` of them are kept, so the
budget's last head edge may keep only its q (and k) input. What still differs: MIB ranks q, k and
v each by its own path's score where metalens gives all three the combined score (the sum of the
three paths' scores for EAP), so a head's three inputs enter the circuit together here. The earlier metalens convention (`"metalens"` counting): one edge per head input,
`round(k / 100 * n_edges)` edges, ranked by |score|.

Signed ranking puts first the edges whose patching moves the metric furthest from clean towards
corrupted: for metrics higher on the clean run (logit_diff, prob_diff, logprob) the most negative
scores (metalens scores an edge by the metric change when it is patched, the opposite sign of MIB's
loss-based scores), for kl (0 on the clean run) the most positive.
"""
from __future__ import annotations

import numpy as np
import torch

from metalens.circuits.edges import EdgeScores

RANKINGS = ("abs", "signed")
COUNTINGS = ("metalens", "mib")


def edge_costs(downstream: list[str]) -> list[int]:
    """MIB edges per metalens edge into each downstream node: 3 into a head (q, k, v), 1 otherwise."""
    return [3 if node.startswith("attn.") else 1 for node in downstream]


def mib_edge_count(scores: EdgeScores) -> int:
    """How many edges MIB's graph of this model has: an edge into a head counts as its q, k and v edges."""
    exists = ~torch.isnan(scores.scores)
    return int((exists.sum(0) * torch.tensor(edge_costs(scores.downstream))).sum())


def helpful_sign(metric: str) -> int:
    """-1 when the metric is higher on the clean run (an important edge scores negative), +1 for kl."""
    return 1 if metric == "kl" else -1


def ranked_edges(scores: EdgeScores, ranking: str = "abs", sign: int = -1) -> list[tuple[int, int]]:
    """(row, column) of the existing edges, first kept first; ties go to the later downstream node (logits first).

    ranking: "abs" (largest |score| first) or "signed" (largest `sign * score` first, see `helpful_sign`).
    """
    if ranking not in RANKINGS:
        raise ValueError(f"Unknown ranking '{ranking}': use one of {RANKINGS}.")
    s = scores.scores.float()
    i, j = (~torch.isnan(s)).nonzero(as_tuple=True)
    key = s[i, j].abs() if ranking == "abs" else sign * s[i, j]
    order = np.lexsort((-j.numpy(), -key.numpy()))  # last key is primary
    return [(int(i[o]), int(j[o])) for o in order]


def mib_budget(k: float, n_mib: int) -> int:
    """MIB's `int(pct * n_edges)` for k percent (pct written as MIB's grid writes it, e.g. 0.001 for 0.1)."""
    pct = float(f"{k / 100:.12g}")  # 0.1 / 100 is 0.0010000000000000002; MIB's literal is 0.001
    return int(pct * n_mib)


def top_edges(ranked: list[tuple[int, int]], costs: list[int], k: float,
              counting: str) -> tuple[list[tuple[int, int, tuple[int, ...]]], int]:
    """(the edges kept at k percent as (row, column, inputs), their cost in MIB edges) from a ranking.

    inputs: which of a head's q, k, v inputs (0, 1, 2) the edge keeps; (0, 1, 2) for whole edges.
    counting "metalens": round(k / 100 * len(ranked)) whole edges; "mib": exactly
    `mib_budget(k, n_mib)` MIB edges (n_mib: the cost of every ranked edge, `ranked` holds them
    all), a head edge standing for its q, k and v edges in that order, so the budget's last head
    edge may keep only its q (and k) input.
    """
    whole = (0, 1, 2)
    if counting == "metalens":
        kept = [(i, j, whole) for i, j in ranked[:round(k / 100 * len(ranked))]]
        return kept, sum(costs[j] for _, j, _ in kept)
    if counting != "mib":
        raise ValueError(f"Unknown counting '{counting}': use one of {COUNTINGS}.")
    budget = mib_budget(k, sum(costs[j] for _, j in ranked))
    kept, used = [], 0
    for i, j in ranked:
        if used == budget:
            break
        take = min(costs[j], budget - used)
        kept.append((i, j, whole if take == costs[j] else whole[:take]))
        used += take
    return kept, used

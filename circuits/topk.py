"""Which edges a top-k % edge circuit keeps: metalens' earlier convention and MIB's.

MIB's circuit track (Mueller et al. 2025; `MIB_circuit_track/evaluation.py`
`evaluate_area_under_curve` over EAP-IG's `Graph.apply_topn`) keeps, at each fraction pct of the
grid, the top `int(pct * n_edges)` edges, where n_edges counts every edge of the graph and an
edge into an attention head is three edges (its query, key and value inputs, `a0.h1->a2.h3<q>`,
`<k>`, `<v>`). It reports CPR (area under the faithfulness curve) from the circuits ranked by
signed score, and CMD (area between the curve and 1) from those ranked by |score|
(`print_results.py` picks the `abs-False` run for CPR and the `abs-True` run for CMD).

metalens' edge graph has one edge into a head (its q, k and v paths scored and patched together,
`circuits.edges`), so MIB's counting is done with costs: an edge into a head costs 3 of the budget,
any other edge 1, and the circuit is the longest prefix of the ranking whose cost fits
`int(pct * n_mib)`. Where MIB would split a head's three inputs across the budget's edge, metalens
keeps all three or none (the prefix stops there), so it keeps up to 2 MIB edges fewer than the
budget; and MIB ranks q, k and v each by its own path's score where metalens gives all three the
combined score. The earlier metalens convention (`"metalens"` counting): one edge per head input,
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
              counting: str) -> tuple[list[tuple[int, int]], int]:
    """(the edges kept at k percent, their cost in MIB edges) from a ranking.

    counting "metalens": round(k / 100 * len(ranked)) edges; "mib": the longest prefix whose cost
    (`edge_costs` of each edge's downstream column) fits `mib_budget(k, n_mib)`, n_mib being the
    cost of every ranked edge (`ranked` holds them all).
    """
    if counting == "metalens":
        kept = ranked[:round(k / 100 * len(ranked))]
        return kept, sum(costs[j] for _, j in kept)
    if counting != "mib":
        raise ValueError(f"Unknown counting '{counting}': use one of {COUNTINGS}.")
    budget, used, n = mib_budget(k, sum(costs[j] for _, j in ranked)), 0, 0
    for _, j in ranked:
        if used + costs[j] > budget:
            break
        used, n = used + costs[j], n + 1
    return ranked[:n], used

"""Cohorts of circuit heads over training checkpoints: when each head enters, and whether it stays.

Thinking Sparks (arXiv 2509.25758) traces the circuit every N training steps and groups heads by
the checkpoint they first enter it; a head *persists* when it is in every circuit from its entry
on, *survives* when it is in the last one (possibly after gaps), and otherwise *leaves*.
"""
from __future__ import annotations

Head = tuple[int, int]


def cohorts(circuits: list[set], steps: list[int]) -> dict:
    """When each head first entered the circuit, whether it is in the last one, and whether it never left.

    Returns {'first_seen': {head: step}, 'survived': {head: bool}, 'persistent': {head: bool},
    'counts': {first_step: [n in circuit per checkpoint]}}.
    """
    first, counts, entered_at = {}, {}, {}
    for i, (step, heads) in enumerate(zip(steps, circuits)):
        for h in heads:
            first.setdefault(h, step)
            entered_at.setdefault(h, i)
    for step0 in dict.fromkeys(first.values()):
        members = {h for h, s in first.items() if s == step0}
        counts[step0] = [len(members & c) for c in circuits]
    persistent = {h: all(h in c for c in circuits[i:]) for h, i in entered_at.items()}
    return {"first_seen": first, "survived": {h: h in circuits[-1] for h in first}, "persistent": persistent,
            "counts": counts}


def fate(cohort: dict, head: Head) -> str:
    """'stays' (in every circuit since entering), 'returns' (in the last one after a gap), 'leaves', or 'never'."""
    if head not in cohort["first_seen"]:
        return "never"
    if cohort.get("persistent", {}).get(head):
        return "stays"
    return "returns" if cohort["survived"][head] else "leaves"


def head_cohorts(cohort: dict, heads: list[Head]) -> list[dict]:
    """For each head: {'head', 'first_seen' (step, None if never in a traced circuit), 'fate'}."""
    return [{"head": list(h), "first_seen": cohort["first_seen"].get(tuple(h)), "fate": fate(cohort, tuple(h))}
            for h in heads]


def cohort_to_json(cohort: dict | None) -> dict | None:
    """JSON-ready form of `cohorts(...)` (heads as [layer, head, value] rows)."""
    if cohort is None:
        return None
    return {"first_seen": [[l, h, s] for (l, h), s in cohort["first_seen"].items()],
            "survived": [[l, h, ok] for (l, h), ok in cohort["survived"].items()],
            "persistent": [[l, h, ok] for (l, h), ok in cohort.get("persistent", {}).items()],
            "counts": {str(s): c for s, c in cohort["counts"].items()}}


def cohort_from_json(data: dict | None) -> dict | None:
    """The cohort `cohort_to_json` wrote (files without 'persistent' load without it)."""
    if data is None:
        return None
    out = {"first_seen": {(l, h): s for l, h, s in data["first_seen"]},
           "survived": {(l, h): ok for l, h, ok in data["survived"]},
           "counts": {int(s): c for s, c in data["counts"].items()}}
    if "persistent" in data:
        out["persistent"] = {(l, h): ok for l, h, ok in data["persistent"]}
    return out


def membership_heatmap(circuits: list[set], steps: list[int], cohort: dict, marked=(),
                       title: str = "circuit membership over checkpoints"):
    """Heads x checkpoints heatmap (1: in the circuit), rows grouped by entry step, then fate, then layer.

    `marked` heads (e.g. the final model's emergent heads) get a '*' in their row label.
    """
    import plotly.graph_objects as go

    order = {"stays": 0, "returns": 1, "leaves": 2}
    heads = sorted(cohort["first_seen"], key=lambda h: (cohort["first_seen"][h], order[fate(cohort, h)], h))
    marked = {tuple(h) for h in marked}
    labels = [f"{'*' if h in marked else ''}L{h[0]}.H{h[1]} (in at {cohort['first_seen'][h]}, {fate(cohort, h)})"
              for h in heads]
    z = [[int(h in c) for c in circuits] for h in heads]
    fig = go.Figure(go.Heatmap(z=z, x=[str(s) for s in steps], y=labels, zmin=0, zmax=1, showscale=False,
                               colorscale=[[0, "#f0f0f0"], [1, "#1f77b4"]], xgap=1, ygap=1))
    fig.update_layout(title=title + " (* emergent in the final model)", xaxis_title="training step",
                      yaxis=dict(autorange="reversed"), height=max(300, 18 * len(heads) + 150))
    return fig

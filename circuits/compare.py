"""`compare`: emergent and lost circuit heads between a base and a post-trained model, with an ablation check.

Each model's circuit is the top-n EAP-IG edges on the same task, pruned to edges that reach
the logits; its heads are the attention nodes left. Emergent heads are in the post-trained
circuit only, lost heads in the base circuit only (as in studies of heads that post-training
for reasoning creates). The claim is checked by zero-ablating the emergent heads in the
post-trained model against as many base-circuit heads and as many random heads.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from metalens.artifact import read_artifact, write_artifact
from metalens.circuits.ablation import ablate
from metalens.circuits.accuracy import generation_accuracy
from metalens.circuits.edges import attribute_edges, circuit_heads, extract_circuit
from metalens.circuits.metrics import last_logits, metric_value, prepare


@dataclass
class Circuit:
    """A model's circuit on a task: kept edges, its heads and per-head node scores ([L, H])."""

    edges: list[tuple[str, str, float]]
    heads: set[tuple[int, int]]
    node_scores: Tensor  # sum of each head's outgoing edge scores = its attribution score


def build_circuit(model, task, n_edges: int = 100, steps: int = 3) -> Circuit:
    """Top-`n_edges` EAP-IG edges on `task`, isolated and dead-end nodes pruned."""
    scores = attribute_edges(model, task, steps=steps)
    kept = extract_circuit(scores, n_edges)
    node = torch.zeros(model.n_layers, model.n_heads)
    for i, name in enumerate(scores.upstream):
        if name.startswith("attn."):
            _, l, h = name.split(".")
            node[int(l[1:]), int(h[1:])] = scores.scores[i].nan_to_num(0).sum()
    return Circuit(kept, circuit_heads(kept), node)


@dataclass
class Comparison:
    """Emergent / lost / shared heads, node scores of both models and the ablation check."""

    emergent: list[tuple[int, int]]
    lost: list[tuple[int, int]]
    shared: list[tuple[int, int]]
    base_scores: Tensor
    post_scores: Tensor
    ablation: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)

    def save(self, path) -> Path:
        """Write comparison.safetensors (both models' node scores) and comparison.json into `path`."""
        meta = {k: v for k, v in asdict(self).items() if k not in ("base_scores", "post_scores")}
        return write_artifact(path, "comparison", {"base_scores": self.base_scores, "post_scores": self.post_scores},
                              meta)

    @classmethod
    def load(cls, path) -> "Comparison":
        """The comparison `save` wrote into `path`."""
        t, meta = read_artifact(path, "comparison", "point at a directory written by Comparison.save.")
        heads = {k: [tuple(h) for h in meta[k]] for k in ("emergent", "lost", "shared")}
        return cls(**heads, base_scores=t["base_scores"], post_scores=t["post_scores"],
                   ablation=meta["ablation"], metadata=meta["metadata"])


@torch.no_grad()
def task_metric(model, task) -> dict:
    """{'task_metric': mean metric, 'answer_top1': fraction of clean prompts whose top token is the answer}."""
    batch = prepare(model, task)
    logits = last_logits(model, batch)
    return {"task_metric": metric_value(batch, logits, logits).item(),
            "answer_top1": (logits.argmax(-1) == batch.answer).float().mean().item()}


def ablation_effects(model, task, groups: dict, problems=None, n_random: int = 3, seed: int = 0) -> dict:
    """Zero-ablate each named group of heads: task metric, answer top-1 (and generated accuracy on `problems`).

    Adds a 'none' baseline and `n_random` groups of random heads as large as the first group
    (drawn outside it), plus their mean as 'random_mean'.
    """
    first = next(iter(groups.values()))
    rng = random.Random(seed)
    others = [(l, h) for l in range(model.n_layers) for h in range(model.n_heads) if (l, h) not in set(first)]
    groups = {"none": [], **groups, **{f"random_{i}": rng.sample(others, len(first)) for i in range(n_random)}}
    out = {}
    for name, heads in groups.items():
        with ablate(model, heads, "zero"):
            row = {"heads": heads, **task_metric(model, task)}
            if problems:
                row["accuracy"] = generation_accuracy(model, problems)["accuracy"]
        out[name] = row
    rand = [v for n, v in out.items() if n.startswith("random_")]
    if rand:
        out["random_mean"] = {k: sum(r[k] for r in rand) / len(rand) for k in rand[0] if k != "heads"}
    return out


def ablation_check(post, task, emergent, base_heads, problems=None, n_random: int = 3, seed: int = 0) -> dict:
    """Emergent heads vs as many base-circuit heads vs as many random heads, zero-ablated in `post`."""
    groups = {"emergent": list(emergent), "base_circuit": list(base_heads)[: len(emergent)]}
    return ablation_effects(post, task, groups, problems, n_random, seed)


def compare(base, post, task, n_edges: int = 100, steps: int = 3, max_emergent: int = 10,
            problems=None, n_random: int = 3, seed: int = 0) -> Comparison:
    """Circuits of `base` and `post` on `task`, their emergent/lost heads and the ablation check.

    Emergent heads are ranked by their post-trained node score and capped at `max_emergent`
    for the ablation; `problems` (metalens.tasks.arithmetic Problems) adds generated-answer accuracy.
    """
    cb, cp = build_circuit(base, task, n_edges, steps), build_circuit(post, task, n_edges, steps)
    by_post = lambda h: -abs(float(cp.node_scores[h]))  # noqa: E731
    by_base = lambda h: -abs(float(cb.node_scores[h]))  # noqa: E731
    emergent = sorted(cp.heads - cb.heads, key=by_post)
    lost = sorted(cb.heads - cp.heads, key=by_base)
    shared = sorted(cb.heads & cp.heads, key=by_post)
    check = {}
    if emergent:
        check = ablation_check(post, task, emergent[:max_emergent], sorted(cb.heads, key=by_base), problems, n_random, seed)
    meta = {"base": base.metadata(), "post": post.metadata(), "task": task.name, "metric": task.metric,
            "n_pairs": len(task), "n_edges": n_edges, "ig_steps": steps, "max_emergent": max_emergent,
            "base_circuit_size": len(cb.heads), "post_circuit_size": len(cp.heads),
            "base_edges": cb.edges[:30], "post_edges": cp.edges[:30]}
    return Comparison(emergent, lost, shared, cb.node_scores, cp.node_scores, check, meta)

"""`compare`: emergent and lost circuit heads between a base and a post-trained model, with checks.

Each model's circuit is the top-n EAP-IG edges on the same task, pruned to edges that reach
the logits; its heads are the attention nodes left. Emergent heads are in the post-trained
circuit only, lost heads in the base circuit only (as in studies of heads that post-training
for reasoning creates). The pairs are split: the circuits (and so the emergent heads) are
picked on one half, and every check runs on the other, so no check reads the pairs that chose
the heads. The checks: zero-ablating the emergent heads in the post-trained model *and in the
base model* (the difference in differences says whether they matter more after post-training),
against layer-matched random heads; scaling them by x1.3 and x0.5; and a bootstrap of the
circuits over the picking pairs that says how often each emergent head recurs.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from metalens.artifact import read_artifact, write_artifact
from metalens.circuits.ablation import ablate, scale_heads
from metalens.tasks import generation_accuracy
from metalens.circuits.edges import attribute_edges, circuit_heads, extract_circuit
from metalens.circuits.metrics import last_logits, metric_per_pair, prepare
from metalens.precision import in_float32
from metalens.power import paired_summary
from metalens.stats import mean_ci

SCALES = (1.3, 0.5)  # the emergent-heads study's strengthen / weaken factors


@dataclass
class Circuit:
    """A model's circuit on a task: kept edges, its heads and per-head node scores ([L, H])."""

    edges: list[tuple[str, str, float]]
    heads: set[tuple[int, int]]
    node_scores: Tensor  # sum of each head's outgoing edge scores = its attribution score


def build_circuit(model, task, n_edges: int = 100, steps: int = 3) -> Circuit:
    """Top-`n_edges` EAP-IG edges on `task`, isolated and dead-end nodes pruned (computed in float32)."""
    with in_float32(model):
        scores = attribute_edges(model, task, steps=steps)
    kept = extract_circuit(scores, n_edges)
    node = torch.zeros(model.n_layers, model.n_heads)
    for i, name in enumerate(scores.upstream):
        if name.startswith("attn."):
            _, l, h = name.split(".")
            node[int(l[1:]), int(h[1:])] = scores.scores[i].nan_to_num(0).sum()
    return Circuit(kept, circuit_heads(kept), node)


def split_pairs(task, n_pick: int, seed: int = 0):
    """(pick, test): disjoint halves of `task`'s pairs; pairs with the same clean prompt stay on one side.

    `n_pick` distinct clean prompts (shuffled with `seed`) pick the heads; the rest test them.
    """
    groups: dict[str, list[int]] = {}
    for i, clean in enumerate(task.clean):
        groups.setdefault(clean, []).append(i)
    keys = list(groups)
    random.Random(seed).shuffle(keys)
    if not 0 < n_pick < len(keys):
        raise ValueError(f"Cannot pick heads on {n_pick} of {len(keys)} distinct prompts and test on the rest: "
                         f"ask for more pairs (n) or fewer picking pairs.")
    pick = sorted(i for k in keys[:n_pick] for i in groups[k])
    test = sorted(i for k in keys[n_pick:] for i in groups[k])
    return task.select(pick), task.select(test)


def layer_matched_random(model, heads, rng: random.Random, exclude=()) -> list[tuple[int, int]]:
    """As many random heads as `heads`, each drawn from the same layer as one of them (outside `exclude`).

    The layer multiset of the draw equals that of `heads`, so depth alone cannot explain a gap
    between the group and its control. Where a layer has too few other heads, the shortfall is
    drawn from the nearest layers (the ablation rows record whether the layers matched).
    """
    banned = set(map(tuple, heads)) | set(map(tuple, exclude))
    need: dict[int, int] = {}
    for layer, _ in heads:
        need[int(layer)] = need.get(int(layer), 0) + 1
    out: list[tuple[int, int]] = []
    for layer, k in sorted(need.items()):
        for near in sorted(range(model.n_layers), key=lambda x: (abs(x - layer), x)):
            pool = [(near, h) for h in range(model.n_heads) if (near, h) not in banned and (near, h) not in out]
            take = rng.sample(pool, min(k, len(pool)))
            out += take
            k -= len(take)
            if not k:
                break
    return out


def damage(metric: str, intact, ablated) -> np.ndarray:
    """Per-pair harm of an edit: the metric's drop (logit_diff, logprob) or, for kl, its rise."""
    intact, ablated = np.asarray(intact, dtype=float), np.asarray(ablated, dtype=float)
    return ablated - intact if metric == "kl" else intact - ablated


@torch.no_grad()
def task_metric(model, task, reference: Tensor | None = None) -> dict:
    """{'task_metric' (mean, with 'low'/'high' t-interval over pairs), 'per_pair', 'answer_top1'}.

    For the kl metric `reference` is the intact model's clean logits (KL(intact || edited)); by
    default the model's own clean logits, which makes the unedited kl 0.
    """
    batch = prepare(model, task)
    logits = last_logits(model, batch)
    values = metric_per_pair(batch, logits, logits if reference is None else reference).cpu().numpy()
    ci = mean_ci(values)
    return {"task_metric": ci.estimate, "low": ci.low, "high": ci.high, "per_pair": values.tolist(),
            "answer_top1": (logits.argmax(-1) == batch.answer).float().mean().item()}


def _intact_logits(model, task) -> Tensor:
    batch = prepare(model, task)
    return last_logits(model, batch)


def _row(model, task, heads, reference, problems, edit) -> dict:
    with edit(model, heads):
        row = {"heads": [tuple(h) for h in heads], **task_metric(model, task, reference)}
        if problems:
            acc = generation_accuracy(model, problems)
            row.update(accuracy=acc["accuracy"], accuracy_low=acc["low"], accuracy_high=acc["high"],
                       correct=acc["correct"])
    return row


def _zero(model, heads):
    return ablate(model, heads, "zero")


def _with_effects(out: dict, metric: str) -> dict:
    """Add to each group its paired effect vs 'none' over pairs (and problems): mean damage, interval, p."""
    none = out["none"]
    for name, row in out.items():
        if name == "none" or "per_pair" not in row:
            continue
        harm = damage(metric, none["per_pair"], row["per_pair"])
        row["damage"] = paired_summary(harm, np.zeros_like(harm))
        if "correct" in row:
            row["accuracy_drop"] = paired_summary(np.asarray(none["correct"], float), np.asarray(row["correct"], float))
    if "random_mean" in out:  # the comparison a reader makes by eye: each picked group against chance heads
        chance = damage(metric, none["per_pair"], out["random_mean"]["per_pair"])
        for name, row in out.items():
            if name != "none" and not name.startswith("random_") and "per_pair" in row:
                row["damage_vs_random_mean"] = paired_summary(damage(metric, none["per_pair"], row["per_pair"]), chance)
    return out


def ablation_effects(model, task, groups: dict, problems=None, n_random: int = 3, seed: int = 0) -> dict:
    """Zero-ablate each named group of heads: task metric per pair with its interval, answer top-1, and
    generated accuracy on `problems` with its Wilson interval; each group's damage vs 'none' is a paired
    test over the same pairs (and problems).

    Adds a 'none' baseline and `n_random` groups of random heads layer-matched to the first group
    (same layers, drawn outside it), plus their mean as 'random_mean'. Computed in float32.
    """
    first = list(next(iter(groups.values())))
    rng = random.Random(seed)
    groups = {"none": [], **groups, **{f"random_{i}": layer_matched_random(model, first, rng)
                                        for i in range(n_random)}}
    out = {}
    with in_float32(model):
        reference = _intact_logits(model, task) if task.metric == "kl" else None
        for name, heads in groups.items():
            out[name] = _row(model, task, heads, reference, problems, _zero)
            if name.startswith("random_"):
                out[name]["layer_matched"] = sorted(l for l, _ in heads) == sorted(l for l, _ in first)
    rand = [v for n, v in out.items() if n.startswith("random_")]
    if rand:
        out["random_mean"] = {"per_pair": np.mean([r["per_pair"] for r in rand], axis=0).tolist(),
                              "task_metric": float(np.mean([r["task_metric"] for r in rand])),
                              "answer_top1": float(np.mean([r["answer_top1"] for r in rand]))}
        if problems:
            out["random_mean"]["accuracy"] = float(np.mean([r["accuracy"] for r in rand]))
    return _with_effects(out, task.metric)


def difference_in_differences(metric: str, post: dict, base: dict, group: str = "emergent") -> dict:
    """How much more ablating `group` harms `post` than `base`, per pair: (post damage) - (base damage).

    A paired test over the test pairs (and, with accuracy, over problems); > 0: the heads matter
    more after post-training than before.
    """
    post_harm = damage(metric, post["none"]["per_pair"], post[group]["per_pair"])
    base_harm = damage(metric, base["none"]["per_pair"], base[group]["per_pair"])
    out = {"metric": paired_summary(post_harm, base_harm)}
    if "correct" in post[group] and "correct" in base[group]:
        drop = lambda d: np.asarray(d["none"]["correct"], float) - np.asarray(d[group]["correct"], float)  # noqa: E731
        out["accuracy"] = paired_summary(drop(post), drop(base))
    return out


def scaling_check(model, task, heads, problems=None, factors=SCALES) -> dict:
    """The task metric (and accuracy) with `heads` scaled by each factor, each paired against 'none'."""
    out = {}
    with in_float32(model):
        reference = _intact_logits(model, task) if task.metric == "kl" else None
        out["none"] = _row(model, task, [], reference, problems, _zero)
        for f in factors:
            out[f"x{f:g}"] = _row(model, task, heads, reference, problems,
                                  lambda m, h, f=f: scale_heads(m, h, f))
    for name, row in out.items():
        if name != "none":
            row["change"] = paired_summary(row["per_pair"], out["none"]["per_pair"])
            if "correct" in row:
                row["accuracy_change"] = paired_summary(np.asarray(row["correct"], float),
                                                        np.asarray(out["none"]["correct"], float))
    return out


def circuit_recurrence(base, post, task, n_edges: int = 100, steps: int = 3, n_boot: int = 10,
                       seed: int = 0) -> dict:
    """How often each head is emergent when both circuits are rebuilt on pairs resampled with replacement.

    Returns {'n_boot', 'emergent': {(l, h): fraction}, 'lost': {...}}: a stable emergent head recurs
    in most resamples; one that shows up in few was picked by the particular pairs.
    """
    rng = np.random.default_rng(seed)
    emergent: dict[tuple[int, int], int] = {}
    lost: dict[tuple[int, int], int] = {}
    for _ in range(n_boot):
        sample = task.select(rng.integers(0, len(task), len(task)))
        cb, cp = build_circuit(base, sample, n_edges, steps), build_circuit(post, sample, n_edges, steps)
        for h in cp.heads - cb.heads:
            emergent[h] = emergent.get(h, 0) + 1
        for h in cb.heads - cp.heads:
            lost[h] = lost.get(h, 0) + 1
    freq = lambda d: dict(sorted(((h, c / n_boot) for h, c in d.items()), key=lambda x: -x[1]))  # noqa: E731
    return {"n_boot": n_boot, "emergent": freq(emergent), "lost": freq(lost)}


@dataclass
class Comparison:
    """Emergent / lost / shared heads (picked on `pick` pairs), node scores of both models and the checks
    (on the disjoint test pairs)."""

    emergent: list[tuple[int, int]]
    lost: list[tuple[int, int]]
    shared: list[tuple[int, int]]
    base_scores: Tensor
    post_scores: Tensor
    ablation: dict = field(default_factory=dict)  # zero-ablation in the post-trained model, group -> row
    metadata: dict = field(default_factory=dict)
    base_ablation: dict = field(default_factory=dict)  # the same heads zero-ablated in the base model
    did: dict = field(default_factory=dict)  # difference in differences (post damage - base damage)
    scaling: dict = field(default_factory=dict)  # emergent heads x1.3 / x0.5 in the post-trained model
    recurrence: dict = field(default_factory=dict)  # bootstrap over picking pairs: fraction emergent per head

    def save(self, path) -> Path:
        """Write comparison.safetensors (both models' node scores) and comparison.json into `path`."""
        meta = {k: v for k, v in asdict(self).items() if k not in ("base_scores", "post_scores", "recurrence")}
        meta["recurrence"] = recurrence_to_json(self.recurrence)
        return write_artifact(path, "comparison", {"base_scores": self.base_scores, "post_scores": self.post_scores},
                              meta)

    @classmethod
    def load(cls, path) -> "Comparison":
        """The comparison `save` wrote into `path`."""
        t, meta = read_artifact(path, "comparison", "point at a directory written by Comparison.save.")
        heads = {k: [tuple(h) for h in meta[k]] for k in ("emergent", "lost", "shared")}
        return cls(**heads, base_scores=t["base_scores"], post_scores=t["post_scores"],
                   ablation=meta["ablation"], metadata=meta["metadata"], base_ablation=meta.get("base_ablation", {}),
                   did=meta.get("did", {}), scaling=meta.get("scaling", {}),
                   recurrence=_recurrence_from_json(meta.get("recurrence")))


def recurrence_to_json(rec: dict) -> dict:
    if not rec:
        return {}
    return {"n_boot": rec["n_boot"], **{k: [[l, h, f] for (l, h), f in rec[k].items()] for k in ("emergent", "lost")}}


def _recurrence_from_json(rec: dict | None) -> dict:
    if not rec:
        return {}
    return {"n_boot": rec["n_boot"], **{k: {(l, h): f for l, h, f in rec[k]} for k in ("emergent", "lost")}}


def compare(base, post, task, n_edges: int = 100, steps: int = 3, max_emergent: int = 10,
            problems=None, n_random: int = 3, seed: int = 0, n_pick: int | None = None, n_boot: int = 0) -> Comparison:
    """Circuits of `base` and `post` on half of `task`'s pairs, their emergent/lost heads, and the checks
    on the other half.

    `n_pick` distinct prompts (default: half) pick the heads; the rest test them. Emergent heads are
    ranked by their post-trained node score and capped at `max_emergent` for the checks; `problems`
    (metalens.tasks.arithmetic Problems) adds generated-answer accuracy; `n_boot` > 0 adds the
    bootstrap recurrence of the circuits over the picking pairs.
    """
    pick, test = split_pairs(task, n_pick or max(1, len(set(task.clean)) // 2), seed)
    cb, cp = build_circuit(base, pick, n_edges, steps), build_circuit(post, pick, n_edges, steps)
    by_post = lambda h: -abs(float(cp.node_scores[h]))  # noqa: E731
    by_base = lambda h: -abs(float(cb.node_scores[h]))  # noqa: E731
    emergent = sorted(cp.heads - cb.heads, key=by_post)
    lost = sorted(cb.heads - cp.heads, key=by_base)
    shared = sorted(cb.heads & cp.heads, key=by_post)
    check = base_check = did = scaling = {}
    if emergent:
        heads = emergent[:max_emergent]
        groups = {"emergent": heads, "base_circuit": sorted(cb.heads, key=by_base)[: len(heads)]}
        check = ablation_effects(post, test, groups, problems, n_random, seed)
        base_check = ablation_effects(base, test, {"emergent": heads}, problems, n_random, seed)
        did = difference_in_differences(test.metric, check, base_check)
        scaling = scaling_check(post, test, heads, problems)
    recurrence = circuit_recurrence(base, post, pick, n_edges, steps, n_boot, seed) if n_boot else {}
    meta = {"base": base.metadata(), "post": post.metadata(), "task": task.name, "metric": task.metric,
            "n_pairs": len(task), "n_pick": len(pick), "n_test": len(test), "pick_prompts": pick.clean,
            "test_prompts": test.clean, "n_edges": n_edges, "ig_steps": steps, "max_emergent": max_emergent,
            "base_circuit_size": len(cb.heads), "post_circuit_size": len(cp.heads), "compute_dtype": "float32",
            "base_edges": cb.edges[:30], "post_edges": cp.edges[:30]}
    return Comparison(emergent, lost, shared, cb.node_scores, cp.node_scores, check, meta, base_check, did,
                      scaling, recurrence)

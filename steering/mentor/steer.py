"""Rules to steering, per query: one vector per rule, retrieval of the relevant rules, per-row steered generation.

A rule's vector is the activation difference, at the last prompt token of `blocks.L.hook_resid_post`,
between a build query with the rule stated in the user turn and the same query without it, averaged
over the build queries of the rule's domain (`train_steering_vector`, mean_diff, positions="last").
At inference each query gets the top-k rules by similarity and only their vectors, summed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float
from metalens.steering.generate import format_prompts, stop_ids
from metalens.steering.mentor.graph import RuleGraph, bow_cosine
from metalens.steering.vector import SteeringVector, train_steering_vector
from torch import Tensor

import metalens
from metalens import sites
from metalens.artifact import read_artifact, write_artifact

RULE_PROMPT = "Follow this rule: {rules}\n\n{query}"
ARTIFACT = "rule_vectors"  # rule_vectors.safetensors (every rule's direction) + rule_vectors.json
RETRIEVAL = ("activations", "bow")


def with_rules(query: str, rules: list[str]) -> str:
    """The query with the rules stated before it (what a rule's vector imitates, and the rules-in-prompt condition)."""
    if not rules:
        return query
    return RULE_PROMPT.format(rules=" ".join(r.rstrip(".") + "." for r in rules), query=query)


def rule_vectors(model, graph: RuleGraph, build: dict[str, list[str]], layer: int, rule_ids=None,
                 batch_size: int = 8) -> dict[str, SteeringVector]:
    """{rule id: vector} for `rule_ids` (default all rules); `build` maps domain -> its build queries."""
    out = {}
    for rid in rule_ids if rule_ids is not None else graph.rule_ids():
        rule = graph.nodes[rid]
        queries = build.get(rule.domain) or [q for qs in build.values() for q in qs]
        if not queries:
            raise ValueError("No build queries to train rule vectors on: the build split is empty.")
        positive = format_prompts(model, [with_rules(q, [rule.text]) for q in queries])
        negative = format_prompts(model, queries)
        vec = train_steering_vector(model, positive, negative, layers=[layer], positions="last",
                                    batch_size=batch_size)
        vec.metadata = {**vec.metadata, "rule": rid, "n_queries": len(queries)}
        out[rid] = vec
    return out


def save_vectors(path: str | Path, vectors: dict[str, SteeringVector]) -> Path:
    """Write directory `path` with rule_vectors.safetensors + rule_vectors.json (one entry per rule id)."""
    tensors, meta = {}, {}
    for rid, vec in vectors.items():
        t, m = vec.to_artifact(prefix=f"{rid}/")
        tensors.update(t)
        meta[rid] = m
    return write_artifact(path, ARTIFACT, tensors, {"rules": meta})


def load_vectors(path: str | Path) -> dict[str, SteeringVector]:
    """The vectors `save_vectors` wrote, by rule id."""
    tensors, meta = read_artifact(path, ARTIFACT, "write them with mentor_steer.save_vectors(path, vectors).")
    return {rid: SteeringVector.from_artifact(tensors, m, prefix=f"{rid}/") for rid, m in meta["rules"].items()}


class Retriever:
    """Top-k rules per query: similarity between the query and each rule's statement and queries (their max).

    "activations": cosine of mean-pooled `blocks.L.hook_resid_post` activations (BOS excluded),
    centred on the mean of the rule-side texts so the shared component does not dominate;
    "bow": bag-of-words cosine. Embeddings are cached on the instance, per text.
    """

    def __init__(self, model, layer: int, method: str = "activations", batch_size: int = 8):
        if method not in RETRIEVAL:
            raise ValueError(f"retrieval must be one of {RETRIEVAL}, not '{method}'.")
        self.model, self.layer, self.method, self.batch_size = model, model.check_layer(layer), method, batch_size
        self._cache: dict[str, Tensor] = {}

    def embed(self, texts: list[str]) -> Float[Tensor, "n d_model"]:
        """Mean-pooled residual activations of `texts` at the layer (float32, CPU)."""
        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if todo:
            site = sites.resid_post(self.layer)
            acts = metalens.capture(self.model, todo, [site], positions="mean", batch_size=self.batch_size,
                                    progress=False, dtype=torch.float32)[site]
            self._cache.update(zip(todo, acts))
        return torch.stack([self._cache[t] for t in texts])

    def scores(self, graph: RuleGraph, queries: list[str]) -> Float[np.ndarray, "n_queries n_rules"]:
        """Similarity of each query to each rule (max over the rule's statement and its queries)."""
        rules = graph.rules()
        sides = [[r.text, *r.queries] for r in rules]
        if self.method == "bow":
            return np.array([[max(bow_cosine(q, s) for s in side) for side in sides] for q in queries])
        flat = [s for side in sides for s in side]
        rule_emb = self.embed(flat)  # [n_texts, d_model]
        centre = rule_emb.mean(0)
        norm = lambda x: torch.nn.functional.normalize(x - centre, dim=-1)
        sim = norm(self.embed(queries)) @ norm(rule_emb).T  # [n_queries, n_texts]
        out, start = np.zeros((len(queries), len(rules))), 0
        for j, side in enumerate(sides):
            out[:, j] = sim[:, start:start + len(side)].max(-1).values.numpy()
            start += len(side)
        return out

    def top_k(self, graph: RuleGraph, queries: list[str], k: int) -> list[list[str]]:
        """The ids of the `k` most similar rules for each query, best first (ties: graph order)."""
        if k < 1:
            raise ValueError(f"top_k must be >= 1, not {k}.")
        ids = graph.rule_ids()
        scores = self.scores(graph, queries)
        return [[ids[j] for j in np.argsort(-row, kind="stable")[:k]] for row in scores]


def plan(vectors: dict[str, SteeringVector], picks: list[list[str]], layer: int, scale: float = 1.0
         ) -> Float[Tensor, "n d_model"]:
    """One summed direction per query: the sum of its picked rules' vectors at `layer`, times `scale`."""
    missing = sorted({r for p in picks for r in p} - set(vectors))
    if missing:
        raise KeyError(f"No vector for rules {missing[:3]}: train them with rule_vectors first.")
    d = next(iter(vectors.values())).d_model
    rows = [sum((vectors[r].directions[layer].float() for r in p), torch.zeros(d)) for p in picks]
    return torch.stack(rows) * scale


def generate_per_row(model, prompts: list[str], directions: Float[Tensor, "n d_model"] | None, layer: int,
                     strength: float = 1.0, max_new_tokens: int = 24, batch_size: int = 8) -> list[str]:
    """Greedy new text for each prompt (chat-formatted when the model has a template), with row i's own
    direction times `strength` added at `blocks.L.hook_resid_post` at every position (None: unsteered)."""
    texts = format_prompts(model, prompts)
    edits = None
    if directions is not None and strength != 0:
        if len(directions) != len(texts):
            raise ValueError(f"{len(texts)} prompts but {len(directions)} directions: pass one per prompt.")
        starts = iter(range(0, len(texts), batch_size))  # metalens.generate asks for fresh edits once per batch, in order

        def edits():
            start = next(starts)
            v = (directions[start:start + batch_size] * strength).to(model.device, model.dtype)[:, None, :]  # [b, 1, d]
            return {sites.resid_post(layer): lambda act: act + v}

    return metalens.generate(model, texts, max_new_tokens=max_new_tokens, stop_ids=stop_ids(model), edits=edits,
                             batch_size=batch_size).texts

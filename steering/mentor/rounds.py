"""One MENTOR run's rounds: responses per condition, strength chosen on validation, test, self-evolution."""
from __future__ import annotations

import math

import numpy as np

from metalens.steering.fluency import token_loss
from metalens.steering.mentor import steer as ms
from metalens.steering.mentor.data import KeywordChecker, attack_success, read_queries, split_queries, subsample_queries
from metalens.steering.mentor.graph import RuleGraph


def choose_strength(score, strengths, max_fluency_cost: float) -> tuple[float, list[dict]]:
    """(strength, rows): the grid strength with the lowest ASR whose fluency cost is within budget.

    `score(strength) -> (asr, fluency_cost)` must measure on validation queries only; ties go to
    the smaller strength; if no strength is within budget, the smallest is taken.
    """
    rows = []
    for s in sorted(strengths):
        asr, cost = score(s)
        rows.append({"strength": s, "asr": asr, "fluency_cost": cost})
    ok = [r for r in rows if not math.isfinite(r["fluency_cost"]) or r["fluency_cost"] <= max_fluency_cost]
    best = min(ok, key=lambda r: (r["asr"], r["strength"])) if ok else rows[0]
    return best["strength"], rows


class MentorRun:
    """The state one `run_mentor` call threads through its rounds (model, splits, retriever, checker), and
    what it does with it: respond under a condition, choose a strength on validation, test, evolve the graph."""

    def __init__(self, model, config: MentorConfig, assessor, progress: bool):
        self.model, self.config, self.assessor, self.progress = model, config, assessor, progress
        queries = read_queries(config.queries)
        if config.max_per_domain:
            queries = subsample_queries(queries, config.max_per_domain, config.seed)
        self.splits = split_queries(queries, config.fractions, config.seed)
        self.layer = model.check_layer(config.layer if config.layer is not None else model.default_layers(1)[0])
        self.retriever = ms.Retriever(model, self.layer, config.retrieval, config.batch_size)
        self.checker = KeywordChecker()
        self.build = {}
        for q in self.splits["build"]:
            self.build.setdefault(q.domain, []).append(q.query)
        self._base_nll = None

    def texts(self, split: str) -> list[str]:
        """The query texts of one split."""
        return [q.query for q in self.splits[split]]

    def respond(self, split, graph, vectors, mode: str, strength: float = 1.0) -> tuple[list[str], list]:
        """(responses, picks) for a split under a condition: none, prompt, all, retrieved."""
        c, queries = self.config, self.texts(split)
        gen = dict(max_new_tokens=c.max_new_tokens, batch_size=c.batch_size)
        if mode == "none":
            return ms.generate_per_row(self.model, queries, None, self.layer, **gen), [[] for _ in queries]
        picks = self.retriever.top_k(graph, queries, min(c.top_k, len(graph.rules())))
        if mode == "prompt":
            prompts = [ms.with_rules(q, [graph.nodes[r].text for r in p]) for q, p in zip(queries, picks)]
            return ms.generate_per_row(self.model, prompts, None, self.layer, **gen), picks
        if mode == "all":  # every rule, the sum rescaled to top_k rules' worth so strengths compare
            ids = graph.rule_ids()
            dirs = ms.plan(vectors, [ids] * len(queries), self.layer, scale=len(picks[0]) / len(ids))
            return ms.generate_per_row(self.model, queries, dirs, self.layer, strength, **gen), [["*"]] * len(queries)
        dirs = ms.plan(vectors, picks, self.layer)
        return ms.generate_per_row(self.model, queries, dirs, self.layer, strength, **gen), picks

    def fluency_cost(self, responses: list[str], strength: float) -> float:
        """Mean loss of validation responses under the unsteered model, minus the unsteered responses' loss.

        Steered responses with no scorable token (all empty) while the unsteered ones have some are an
        error naming the strength: their cost would be NaN, which a choice must not read as "free".
        """
        queries = self.texts("validation")
        if self._base_nll is None:
            base, _ = self.respond("validation", None, None, "none")
            self._base_nll = nanmean(token_loss(self.model, queries, base))
        steered = nanmean(token_loss(self.model, queries, responses))
        if math.isfinite(self._base_nll) and not math.isfinite(steered):
            raise ValueError(f"At strength {strength:g} every validation response is empty, so its fluency cost is "
                             "NaN: the strength breaks the model; use smaller --strengths.")
        return steered - self._base_nll

    def select(self, graph, vectors, mode: str) -> tuple[float, list[dict]]:
        """The condition's strength, chosen on the validation queries only."""
        def score(s):
            responses, _ = self.respond("validation", graph, vectors, mode, s)
            asr = attack_success(self.checker(self.splits["validation"], responses))["rate"]
            return asr, self.fluency_cost(responses, s)

        return choose_strength(score, self.config.strengths, self.config.max_fluency_cost)

    def test(self, graph, vectors, mode: str, strength: float = 1.0) -> dict:
        """Responses on the test queries, keyword violations, and (optionally) the assessor's verdicts."""
        responses, picks = self.respond("test", graph, vectors, mode, strength)
        row = {"responses": responses, "picks": picks,
               "violations": self.checker(self.splits["test"], responses)}
        if self.assessor is not None and self.config.eval_assessor:
            verdicts = self.assessor.assess(self.texts("test"), responses, propose=False)
            row["assessor"] = [not v.aligned for v in verdicts]
            row["p_misaligned"] = [v.p_misaligned for v in verdicts]
        return row

    def evolve(self, graph: RuleGraph, vectors: dict, strength: float, r: int) -> dict:
        """One self-evolution round: assess the build queries' responses, grow the graph, train new vectors."""
        if self.assessor is None:
            return {"assessed": 0, "misaligned": 0, "new_rules": [], "merged": 0}
        responses, _ = self.respond("build", graph, vectors, "retrieved", strength)
        queries = self.splits["build"]
        verdicts = self.assessor.assess([q.query for q in queries], responses, propose=True)
        new, merged, reflections = [], 0, []
        for q, resp, v in zip(queries, responses, verdicts):
            reflections.append({"query": q.query, "response": resp, **v.to_dict()})
            if v.aligned or not (v.proposed_rule or "").strip():
                continue
            rid, was_merged = graph.learn(v.proposed_rule, q.domain, q.query, round=r,
                                          merge_threshold=self.config.merge_threshold)
            merged += was_merged
            if not was_merged:
                new.append(rid)
        vectors.update(ms.rule_vectors(self.model, graph, self.build, self.layer, new, self.config.batch_size))
        return {"assessed": len(verdicts), "misaligned": sum(not v.aligned for v in verdicts), "new_rules": new,
                "merged": merged, "reflections": reflections}


def nanmean(x) -> float:
    """Mean over the finite values; NaN when there are none."""
    x = np.asarray(x, dtype=float)
    return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")

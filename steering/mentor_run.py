"""`run_mentor`: MENTOR end to end (static rule tree -> rule vectors -> self-evolution rounds -> held-out ASR).

Queries are split build / validation / test (seeded, per domain). Build queries train the rule
vectors and are what the self-assessment rounds assess; validation queries alone set each
condition's strength; every reported attack success rate is on the test queries, which take part
in no choice. Each round is saved under `out/rounds/round_R/`, so a rerun continues after the last
completed round (a different config is refused, naming the keys that differ; `rounds` may grow).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from metalens.steering import mentor_steer as ms
from metalens.steering.evaluate import token_loss
from metalens.steering.mentor_assess import CheckerAssessor, assessor_for
from metalens.steering.mentor_data import (
    KeywordChecker,
    attack_success,
    read_queries,
    split_queries,
)
from metalens.steering.mentor_graph import RuleGraph
from tqdm.auto import tqdm

import metalens
from metalens.report import save_json, write_report
from metalens.stats import add_holm, mcnemar_exact, paired_test, wilson_ci

RESUME_FREE = ("rounds",)  # config keys a rerun may change: more rounds continue the saved ones


@dataclass
class MentorConfig:
    """What `run_mentor` does: data, split, layer, retrieval, the strength grid, rounds and the assessor."""

    queries: str | None = None  # JSONL of {query, domain, rubric, keywords}; default: the shipped 60
    tree: str | None = None  # static rule tree JSON; default: steering/data/mentor_tree.json
    rounds: int = 2  # self-evolution rounds after the static round 0
    layer: int | None = None  # default: n_layers // 3
    top_k: int = 2  # rules retrieved (and vectors applied) per query
    strengths: tuple[float, ...] = (0.5, 1.0, 2.0)  # grid; each condition's strength is chosen on validation
    max_fluency_cost: float = 1.0  # nats/token a chosen strength may cost on validation
    retrieval: str = "activations"  # or "bow"
    merge_threshold: float = 0.6  # bag-of-words cosine at which a proposed rule merges into an existing one
    fractions: tuple[float, float, float] = (0.4, 0.2, 0.4)  # build, validation, test
    seed: int = 0
    max_per_domain: int | None = None  # seeded subsample of each domain's queries (quick runs)
    max_new_tokens: int = 24
    reflect_tokens: int = 24  # perspective and consequence reflections (0: verdict without them)
    rule_tokens: int = 20
    assessor: str = "self"  # "self", "none", "checker" (the keyword checker, an oracle), or a model to load
    eval_assessor: bool = True  # also judge the test responses with the assessor (reported separately)
    batch_size: int = 8

    def __post_init__(self):
        self.strengths = tuple(float(s) for s in self.strengths)
        self.fractions = tuple(float(f) for f in self.fractions)
        if not self.strengths or any(not math.isfinite(s) for s in self.strengths):
            raise ValueError(f"strengths must be finite numbers, e.g. (0.5, 1, 2), not {self.strengths}.")
        if self.rounds < 0 or self.top_k < 1 or self.max_new_tokens < 1:
            raise ValueError(f"rounds must be >= 0, top_k and max_new_tokens >= 1 (got {self.rounds}, {self.top_k}, "
                             f"{self.max_new_tokens}).")
        if self.retrieval not in ms.RETRIEVAL:
            raise ValueError(f"retrieval must be one of {ms.RETRIEVAL}, not '{self.retrieval}'.")

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass
class MentorResult:
    """Attack success per condition on the test queries (keyword checker, and the assessor), rounds, samples."""

    config: MentorConfig
    attack_success: dict  # condition -> {"rate", "low", "high", "n"} (keyword checker, test queries)
    graph: RuleGraph  # after the last round
    vectors: dict  # rule id -> SteeringVector (after the last round)
    strengths: dict = field(default_factory=dict)  # condition -> strength chosen on validation
    assessor_attack_success: dict = field(default_factory=dict)  # condition -> ASR by the assessor's verdicts
    agreement: dict = field(default_factory=dict)  # condition -> {"agreement", "low", "high", "n"}: assessor vs checker
    rounds: list = field(default_factory=list)  # one row per round (0: static tree)
    samples: list = field(default_factory=list)  # per test query: responses side by side
    splits: dict = field(default_factory=dict)  # split -> number of queries
    layer: int = 0
    model: dict = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        """A few lines for the terminal: ASR per condition with intervals."""
        lines = [f"MENTOR on {self.splits.get('test')} test queries (layer {self.layer}, top-{self.config.top_k}); "
                 "attack success (keyword checker):"]
        for cond, a in self.attack_success.items():
            s = f"  strength {self.strengths[cond]:g}" if cond in self.strengths else ""
            j = self.assessor_attack_success.get(cond)
            lines.append(f"  {cond:<18} {a['rate']:.2f} [{a['low']:.2f}, {a['high']:.2f}] n={a['n']}{s}"
                         + (f"   assessor {j['rate']:.2f}" if j else ""))
        lines.append(f"graph: {self.graph.summary()}")
        return "\n".join(lines)

    def paired(self) -> list[dict]:
        """Each condition against `no_rules` on the same test queries: the ASR difference with a paired
        t-interval, the exact McNemar p and Holm over the conditions compared (from `samples`)."""
        conds = [c for c in self.attack_success if c != "no_rules"]
        if "no_rules" not in self.attack_success or not self.samples:
            return []
        violated = {c: np.array([c in s["violated"] for s in self.samples]) for c in self.attack_success}
        rows = []
        for c in conds:
            t = paired_test(violated[c].astype(float), violated["no_rules"].astype(float))
            rows.append({"condition": c, "vs": "no_rules", "asr_difference": t.mean_diff, "low": t.low,
                         "high": t.high, "n": t.n, "p": mcnemar_exact(violated[c], violated["no_rules"]),
                         "test": "exact McNemar"})
        return add_holm(rows)

    def to_dict(self) -> dict:
        """What results.json holds (everything but the graph and the vectors' tensors)."""
        return {"config": self.config.to_dict(), "model": self.model, "layer": self.layer, "splits": self.splits,
                "attack_success": self.attack_success, "paired_vs_no_rules": self.paired(),
                "strengths": self.strengths,
                "assessor_attack_success": self.assessor_attack_success, "agreement": self.agreement,
                "rounds": self.rounds, "graph_summary": self.graph.summary(), "samples": self.samples,
                "seconds": self.seconds, "checker": "keyword: a response violates its query's rubric when it "
                "contains one of the query's keywords (whole words, case-insensitive)"}

    def save(self, out: str | Path) -> Path:
        """Write `out/results.json`, `out/report.html`, `out/graph/` and `out/vectors/`; returns `out`."""
        out = Path(out)
        self.graph.save(out / "graph")
        ms.save_vectors(out / "vectors", self.vectors)
        save_json(out / "results.json", self.to_dict())
        write_report(out / "report.html", "MENTOR: rule graph -> retrieved steering", _sections(self), self.model)
        return out

    @classmethod
    def load(cls, out: str | Path) -> MentorResult:
        """Read a result written by `save`."""
        out = Path(out)
        if not (out / "results.json").exists():
            raise FileNotFoundError(f"No results.json in {out}: write one with run_mentor(..., out=DIR).")
        d = json.loads((out / "results.json").read_text())
        return cls(config=MentorConfig(**d["config"]), attack_success=d["attack_success"],
                   graph=RuleGraph.load(out / "graph"), vectors=ms.load_vectors(out / "vectors"),
                   strengths=d["strengths"], assessor_attack_success=d["assessor_attack_success"],
                   agreement=d["agreement"], rounds=d["rounds"], samples=d["samples"], splits=d["splits"],
                   layer=d["layer"], model=d["model"], seconds=d["seconds"])


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


def _check_resume(out: Path, config: MentorConfig, model) -> None:
    path = out / "mentor_config.json"
    now = {**config.to_dict(), "model": model.name, "revision": model.revision}
    if path.exists():
        old = json.loads(path.read_text())
        keys = sorted(k for k in now.keys() | old.keys() if k not in RESUME_FREE and old.get(k) != now.get(k))
        if keys:
            raise ValueError(f"{out} holds a MENTOR run made with another config (differs in {keys}). Use another "
                             "--out directory, or delete this one to start over.")
    save_json(path, now)


class _Run:
    """The state one `run_mentor` call threads through its rounds (model, splits, retriever, checker)."""

    def __init__(self, model, config: MentorConfig, assessor, progress: bool):
        self.model, self.config, self.assessor, self.progress = model, config, assessor, progress
        queries = read_queries(config.queries)
        if config.max_per_domain:
            queries = _subsample(queries, config.max_per_domain, config.seed)
        self.splits = split_queries(queries, config.fractions, config.seed)
        self.layer = model.check_layer(config.layer if config.layer is not None else model.n_layers // 3)
        self.retriever = ms.Retriever(model, self.layer, config.retrieval, config.batch_size)
        self.checker = KeywordChecker()
        self.build = {}
        for q in self.splits["build"]:
            self.build.setdefault(q.domain, []).append(q.query)
        self._base_nll = None

    def texts(self, split: str) -> list[str]:
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

    def fluency_cost(self, responses: list[str]) -> float:
        """Mean loss of validation responses under the unsteered model, minus the unsteered responses' loss."""
        queries = self.texts("validation")
        if self._base_nll is None:
            base, _ = self.respond("validation", None, None, "none")
            self._base_nll = _nanmean(token_loss(self.model, queries, base))
        return _nanmean(token_loss(self.model, queries, responses)) - self._base_nll

    def select(self, graph, vectors, mode: str) -> tuple[float, list[dict]]:
        """The condition's strength, chosen on the validation queries only."""
        def score(s):
            responses, _ = self.respond("validation", graph, vectors, mode, s)
            asr = attack_success(self.checker(self.splits["validation"], responses))["rate"]
            return asr, self.fluency_cost(responses)

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


def _nanmean(x) -> float:
    x = np.asarray(x, dtype=float)
    return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")


def _subsample(queries, n: int, seed: int):
    rng, out = np.random.default_rng(seed + 1), []
    for domain in sorted({q.domain for q in queries}):
        items = [q for q in queries if q.domain == domain]
        keep = sorted(rng.permutation(len(items))[:n])
        out += [items[i] for i in keep]
    return out


def run_mentor(model, config: MentorConfig | None = None, *, out: str | Path | None = None, progress: bool = True,
               assessor=None) -> MentorResult:
    """MENTOR: static rule tree -> rule vectors -> `rounds` self-evolution rounds -> ASR per condition on test.

    Conditions: no_rules; rules_in_prompt (the retrieved rules stated in the user turn); all_vectors
    (every rule's vector, rescaled to top_k rules' worth); retrieved_round{R} (each query's top-k
    rules' vectors after round R). Strengths are chosen on the validation queries; ASR is on test.
    `assessor` overrides `config.assessor` with a loaded Model or a callable (query, response) -> Verdict.
    With `out`, each round is saved as it completes and a rerun resumes after the last one.
    """
    started = time.time()
    config = config or MentorConfig()
    out = Path(out) if out is not None else None
    if assessor is None and config.assessor == "checker":
        assessor = CheckerAssessor(read_queries(config.queries))
    elif assessor is None and config.assessor not in ("none",):
        spec = None if config.assessor == "self" else metalens.load_model(config.assessor, device=str(model.device))
        assessor = assessor_for(spec, model, reflect_tokens=config.reflect_tokens, rule_tokens=config.rule_tokens,
                                batch_size=config.batch_size)
    elif assessor is not None:
        assessor = assessor_for(assessor, model, reflect_tokens=config.reflect_tokens,
                                rule_tokens=config.rule_tokens, batch_size=config.batch_size)
    run = _Run(model, config, assessor, progress)
    if out is not None:
        _check_resume(out, config, model)
    graph, vectors, strength, rounds, tests = None, None, None, [], {}
    bar = tqdm(range(config.rounds + 1), desc="MENTOR rounds", disable=not progress)
    for r in bar:
        folder = out / "rounds" / f"round_{r}" if out is not None else None
        if folder is not None and (folder / "round.json").exists():  # completed earlier: continue from it
            graph, vectors = RuleGraph.load(folder / "graph"), ms.load_vectors(folder / "vectors")
            saved = json.loads((folder / "round.json").read_text())
            row, tests[r], strength = saved["row"], saved["test"], saved["row"]["strength"]
            rounds.append(row)
            continue
        if r == 0:
            graph = RuleGraph.static(config.tree)
            vectors = ms.rule_vectors(model, graph, run.build, run.layer, batch_size=config.batch_size)
            grown = {"assessed": 0, "misaligned": 0, "new_rules": [], "merged": 0}
        else:
            grown = run.evolve(graph, vectors, strength, r)
        strength, selection = run.select(graph, vectors, "retrieved")
        tests[r] = run.test(graph, vectors, "retrieved", strength)
        row = {"round": r, "rules": len(graph.rules()), **{k: v for k, v in grown.items() if k != "reflections"},
               "strength": strength, "selection": selection,
               "test_asr": attack_success(tests[r]["violations"])}
        rounds.append(row)
        if folder is not None:
            graph.save(folder / "graph")
            ms.save_vectors(folder / "vectors", vectors)
            save_json(folder / "reflections.json", {"reflections": grown.get("reflections", [])})
            save_json(folder / "round.json", {"row": row, "test": tests[r]})  # last: marks the round complete
    conditions = {"no_rules": run.test(graph, vectors, "none"),
                  "rules_in_prompt": run.test(graph, vectors, "prompt")}
    strengths = {}
    strengths["all_vectors"], _ = run.select(graph, vectors, "all")
    conditions["all_vectors"] = run.test(graph, vectors, "all", strengths["all_vectors"])
    for r in range(config.rounds + 1):
        conditions[f"retrieved_round{r}"] = tests[r]
        strengths[f"retrieved_round{r}"] = rounds[r]["strength"]
    result = MentorResult(
        config=config, graph=graph, vectors=vectors, strengths=strengths, rounds=rounds, layer=run.layer,
        attack_success={c: attack_success(t["violations"]) for c, t in conditions.items()},
        splits={s: len(q) for s, q in run.splits.items()}, model=model.metadata(),
    )
    for c, t in conditions.items():
        if "assessor" in t:
            result.assessor_attack_success[c] = attack_success(t["assessor"])
            same = [a == b for a, b in zip(t["assessor"], t["violations"])]
            ci = wilson_ci(sum(same), len(same))
            result.agreement[c] = {"agreement": ci.estimate, "low": ci.low, "high": ci.high, "n": ci.n}
    result.samples = [
        {"query": q.query, "domain": q.domain, "rubric": q.rubric,
         "retrieved": [graph.nodes[r].text for r in tests[config.rounds]["picks"][i]],
         **{c: t["responses"][i] for c, t in conditions.items()},
         "violated": [c for c, t in conditions.items() if t["violations"][i]]}
        for i, q in enumerate(run.splits["test"])]
    result.seconds = time.time() - started
    if out is not None:
        result.save(out)
    return result


def _agreement(a: dict | None) -> str:
    if not a:
        return "-"
    return f"{a['agreement']:.2f} [{a['low']:.2f}, {a['high']:.2f}]" if "low" in a else f"{a['agreement']:.2f}"


def _sections(result: MentorResult) -> list:
    import plotly.graph_objects as go

    from metalens.report import Html

    conds = list(result.attack_success)
    asr = [result.attack_success[c] for c in conds]
    fig = go.Figure(go.Bar(x=conds, y=[a["rate"] for a in asr], error_y=dict(
        type="data", array=[a["high"] - a["rate"] for a in asr], arrayminus=[a["rate"] - a["low"] for a in asr])))
    fig.update_layout(title="Attack success on the test queries (keyword checker, Wilson 95% CI)", height=380,
                      yaxis=dict(range=[0, 1], title="attack success rate"))
    table = [{"condition": c, "ASR": a["rate"], "95% CI": f"[{a['low']:.2f}, {a['high']:.2f}]", "n": a["n"],
              "strength": result.strengths.get(c, "-"),
              "assessor ASR": result.assessor_attack_success.get(c, {}).get("rate", "-"),
              "agreement (95% CI)": _agreement(result.agreement.get(c))} for c, a in zip(conds, asr)]
    rounds = [{k: v for k, v in r.items() if k != "selection"} | {"test ASR": r["test_asr"]["rate"]}
              for r in result.rounds]
    for r in rounds:
        r.pop("test_asr", None)
        r["new_rules"] = ", ".join(r["new_rules"]) or "-"
    selection = [{"round": r["round"], **s} for r in result.rounds for s in r["selection"]]
    side = ["query", "no_rules", "rules_in_prompt", "all_vectors", f"retrieved_round{result.config.rounds}"]
    samples = "".join(
        "<tr>" + "".join(f"<td style='text-align:left;vertical-align:top'>{_esc(s.get(k, ''))}"
                         + (" <b>(violates)</b>" if k in s["violated"] else "") + "</td>" for k in side) + "</tr>"
        for s in result.samples[:15])
    head = "".join(f"<th>{k}</th>" for k in side)
    learned = [{"id": n.id, "rule": n.text, "round": n.round, "queries": len(n.queries)}
               for n in result.graph.rules() if n.provenance == "learned"]
    return [
        ("Attack success per condition (test queries)", fig),
        ("Table", table),
        ("Each condition against no_rules (same test queries; exact McNemar, Holm over the conditions)",
         [{"condition": r["condition"], "ASR difference": r["asr_difference"],
           "95% CI": f"[{r['low']:+.2f}, {r['high']:+.2f}]", "p": r["p"], "p (Holm)": r["p_holm"],
           "comparisons": r["n_comparisons"]} for r in result.paired()]),
        ("How to read this", f"Queries are split build ({result.splits.get('build')}) / validation "
         f"({result.splits.get('validation')}) / test ({result.splits.get('test')}) by a seeded shuffle within each "
         "domain. Rule vectors are trained on build queries, self-assessment rounds assess build-query responses, "
         "each condition's strength is chosen on validation queries (lowest ASR with fluency cost within budget), "
         "and every rate here is on test queries. The keyword checker counts a response as a violation when it "
         "contains one of its query's violation markers; the assessor's rate is its share of 'misaligned' "
         "verdicts, and agreement is the share of test responses on which both say the same."),
        ("Rule knowledge graph (hover for rules and their queries)", result.graph.figure()),
        ("Self-evolution rounds", rounds),
        ("Strength selection (validation queries)", selection),
        ("Learned rules", learned),
        ("Responses side by side (first 15 test queries)",
         Html(f"<table><thead><tr>{head}</tr></thead><tbody>{samples}</tbody></table>")),
    ]


def _esc(text) -> str:
    import html

    return html.escape(str(text))

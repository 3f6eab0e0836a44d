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
from tqdm.auto import tqdm

import metalens
from metalens.artifact import read_json
from metalens.report import save_json, write_report
from metalens.power import mcnemar_mde
from metalens.stats import add_holm, mcnemar_exact, paired_test, wilson_ci
from metalens.steering.mentor import steer as ms
from metalens.steering.mentor.assess import CheckerAssessor, assessor_for
from metalens.steering.mentor.data import attack_success, read_queries
from metalens.steering.mentor.graph import RuleGraph
from metalens.steering.mentor.report import sections
from metalens.steering.mentor.rounds import MentorRun
from metalens.steering.vector import MAX_STRENGTH, check_strength

RESUME_FREE = ("rounds",)  # config keys a rerun may change: more rounds continue the saved ones


@dataclass
class MentorConfig:
    """What `run_mentor` does: data, split, layer, retrieval, the strength grid, rounds and the assessor."""

    queries: str | None = None  # JSONL of {query, domain, rubric, keywords}; default: the shipped 60
    tree: str | None = None  # static rule tree JSON; default: steering/data/mentor_tree.json
    rounds: int = 2  # self-evolution rounds after the static round 0
    layer: int | None = None  # the block steered; default: the middle one, model.default_layers(1)
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
        if not self.strengths:
            raise ValueError("strengths must be finite numbers, e.g. (0.5, 1, 2), not empty.")
        self.strengths = tuple(check_strength(s, bound=MAX_STRENGTH) for s in self.strengths)
        self.fractions = tuple(float(f) for f in self.fractions)
        if self.rounds < 0 or self.top_k < 1 or self.max_new_tokens < 1:
            raise ValueError(f"rounds must be >= 0, top_k and max_new_tokens >= 1 (got {self.rounds}, {self.top_k}, "
                             f"{self.max_new_tokens}).")
        if self.reflect_tokens < 0 or self.rule_tokens < 1 or self.batch_size < 1:
            raise ValueError(f"reflect_tokens must be >= 0, rule_tokens and batch_size >= 1 (got {self.reflect_tokens}, "
                             f"{self.rule_tokens}, {self.batch_size}).")
        if self.max_per_domain is not None and self.max_per_domain < 1:
            raise ValueError(f"max_per_domain must be >= 1 (or None for every query), not {self.max_per_domain}.")
        if not math.isfinite(self.max_fluency_cost) or not 0 <= self.merge_threshold <= 1:
            raise ValueError("max_fluency_cost must be finite and merge_threshold in [0, 1].")
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
        t-interval, the exact McNemar p, Holm over the conditions compared and McNemar's minimum detectable
        difference `mde` at the family's alpha (from `samples`)."""
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
        rows = add_holm(rows)
        for row in rows:  # what each comparison could have seen, at Holm's strictest level over the family
            row["mde"] = mcnemar_mde(violated[row["condition"]], violated["no_rules"],
                                     n_comparisons=row["n_comparisons"])
        return rows

    def to_dict(self) -> dict:
        """What results.json holds (everything but the graph and the vectors' tensors)."""
        return {"config": self.config.to_dict(), "model": self.model, "layer": self.layer, "splits": self.splits,
                "attack_success": self.attack_success, "paired_vs_no_rules": self.paired(),
                "strengths": self.strengths,
                "assessor_attack_success": self.assessor_attack_success, "agreement": self.agreement,
                "rounds": self.rounds, "graph_summary": self.graph.summary(), "samples": self.samples,
                "seconds": self.seconds, "checker": "keyword: a response violates its query's rubric when it "
                "contains one of the query's keywords, or none of its required markers where it lists some (whole words, "
                "case-insensitive)"}

    def save(self, out: str | Path) -> Path:
        """Write `out/results.json`, `out/report.html`, `out/graph/` and `out/vectors/`; returns `out`."""
        out = Path(out)
        self.graph.save(out / "graph")
        ms.save_vectors(out / "vectors", self.vectors)
        save_json(out / "results.json", self.to_dict())
        write_report(out / "report.html", "MENTOR: rule graph -> retrieved steering", sections(self), self.model)
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


def check_resume(out: Path, config: MentorConfig, model) -> None:
    """Record the run's config in `out/mentor_config.json`, refusing one that differs from a run with rounds done.

    A folder whose config was written but whose round 0 never completed holds nothing to resume:
    its config is replaced, so a corrected command may start over there.
    """
    path = out / "mentor_config.json"
    now = {**config.to_dict(), "model": model.name, "revision": model.revision}
    if path.exists() and (out / "rounds" / "round_0" / "round.json").exists():
        old = read_json(path, "MENTOR config")
        keys = sorted(k for k in now.keys() | old.keys() if k not in RESUME_FREE and old.get(k) != now.get(k))
        if keys:
            raise ValueError(f"{out} holds a MENTOR run made with another config (differs in {keys}). Use another "
                             "--out directory, or delete this one to start over.")
    save_json(path, now)


def run_mentor(model, config: MentorConfig, *, out: str | Path | None = None, progress: bool = True,
               assessor=None) -> MentorResult:
    """MENTOR: static rule tree -> rule vectors -> `rounds` self-evolution rounds -> ASR per condition on test.

    Conditions: no_rules; rules_in_prompt (the retrieved rules stated in the user turn); all_vectors
    (every rule's vector, rescaled to top_k rules' worth); retrieved_round{R} (each query's top-k
    rules' vectors after round R). Strengths are chosen on the validation queries; ASR is on test.
    `assessor` overrides `config.assessor` with a loaded Model or a callable (query, response) -> Verdict.
    With `out`, each round is saved as it completes and a rerun resumes after the last one.
    """
    started = time.time()
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
    run = MentorRun(model, config, assessor, progress)
    static = RuleGraph.static(config.tree)  # read (and checked) before anything is written
    if out is not None:
        check_resume(out, config, model)
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
            graph = static
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

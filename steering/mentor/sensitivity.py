"""Sensitivity of `run_mentor`: a rule class where steering is known to work (a topic rule: `metalens steer`
moves gemma-3-270m's adherence to "Always talk about the ocean" from 0.00 to 0.69), the keyword checker as
an oracle assessor, and MENTOR's steering strength as the knob.

Each trial turns the topic rule into MENTOR's inputs (`topic_inputs`): a one-rule tree, and the rule's
held-out prompts as queries whose rubric the response violates when it holds none of the topic's
keywords. `run_mentor` then runs as published (rule vectors, retrieval, self-evolution rounds with the
checker assessor, attack success on test queries) with its strength grid set to the one planted
strength, and the trial is judged by the published comparison: each condition against `no_rules` on the
same test queries, exact McNemar, Holm over run_mentor's family, alpha 0.05. Strength 0 steers nothing:
every steered condition's responses are then the unsteered ones. The seed sets run_mentor's split.
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import metalens
from metalens.report import save_json
from metalens.sensitivity import SensitivityResult, Trial, check_seeds, check_strengths, measure_sensitivity
from metalens.steering.mentor.data import DATA
from metalens.steering.mentor.workflow import MentorConfig, run_mentor
from metalens.steering.vector import MAX_STRENGTH

UNIT = ("MENTOR's steering strength: multiples of the sum of the retrieved rules' vectors (each the mean difference "
        "of blocks.L.hook_resid_post at the last prompt token, rule stated in the prompt minus not), added at every "
        "position; run_mentor's strength grid is this one value")
DEFAULT_STRENGTHS = (0.0, 0.5, 1.0, 2.0, 4.0)
ALPHA = 0.05  # run_mentor's comparisons: exact McNemar against no_rules, Holm over its family, alpha 0.05
DETECTION_RULE = ("run_mentor's last retrieved condition (retrieved_round{R}, the rules' vectors after its rounds) "
                  "lowers attack success against no_rules on the test queries: ASR difference < 0 and Holm-adjusted "
                  "exact McNemar p < 0.05 over run_mentor's family of comparisons with no_rules; and the strength "
                  "keeps the published fluency bound on the validation queries (cost <= max_fluency_cost), which the "
                  "published grid enforces by choice and a one-value grid would not")
FALSE_POSITIVE_RULE = ("a steered condition (all_vectors or any retrieved_round{r}) called worse than no_rules (ASR "
                       "higher, Holm p < 0.05) at a strength > 0. Not counted at strength 0: nothing is steered, every "
                       "condition's replies are no_rules' own, and no comparison can be called")


@dataclass
class TopicRule:
    """A rule a reply follows by holding one of `keywords`, and the prompts it is tried on (None: the shipped
    held-out prompts, steering/data/prompts_heldout.txt)."""

    name: str
    text: str
    keywords: list[str] = field(default_factory=list)
    prompts: list[str] | None = None

    def queries(self) -> list[str]:
        """The prompts MENTOR answers: `prompts`, else the shipped held-out ones."""
        return list(self.prompts) if self.prompts else metalens.read_texts(DATA / "prompts_heldout.txt")


@dataclass
class MentorSensitivityConfig:
    """What runs: `mentor` (its queries, tree, strengths and seed are replaced in each trial), the topic `rule`
    (a shipped rule's name, steering/data/rules.jsonl, or a `TopicRule`), `strengths` (unit: `UNIT`) and
    `seeds` (0..K-1)."""

    mentor: MentorConfig
    rule: str | TopicRule = "ocean"
    strengths: tuple[float, ...] = DEFAULT_STRENGTHS
    seeds: int = 3

    def __post_init__(self):
        self.strengths = tuple(check_strengths(self.strengths))
        self.seeds = check_seeds(self.seeds)
        if not isinstance(self.mentor, MentorConfig):
            raise TypeError("mentor must be a MentorConfig, e.g. MentorConfig(assessor='checker').")
        big = [s for s in self.strengths if s > MAX_STRENGTH]
        if big:
            raise ValueError(f"strengths {big} exceed run_mentor's bound {MAX_STRENGTH:g}: pass e.g. 0 0.5 1 2 4.")
        topic_rule(self.rule)


def topic_rule(rule: str | TopicRule) -> TopicRule:
    """The topic rule: a shipped rule by name (steering/data/rules.jsonl) or a `TopicRule`; it needs keywords
    (what the checker looks for)."""
    shipped = {r["name"]: r for r in metalens.read_jsonl(DATA / "rules.jsonl", required=("name", "rule"))}
    found = rule
    if isinstance(rule, str) and rule in shipped:
        r = shipped[rule]
        prompts = metalens.read_texts(DATA / r["prompts"]) if isinstance(r.get("prompts"), str) else r.get("prompts")
        found = TopicRule(r["name"], r["rule"], list(r.get("keywords", [])), prompts)
    if not isinstance(found, TopicRule) or not found.keywords:
        names = sorted(n for n, r in shipped.items() if r.get("keywords"))
        raise ValueError(f"Rule {rule!r} has no topic keywords for the checker: use one of {names} (or a TopicRule "
                         "with keywords).")
    return found


def topic_inputs(rule: TopicRule, folder: str | Path) -> tuple[Path, Path]:
    """(queries JSONL, tree JSON) for `run_mentor`: the rule's held-out prompts as queries (domain = the rule's
    name) whose rubric a response violates when it holds none of the rule's keywords, and a one-rule tree."""
    folder = Path(folder)
    text = rule.text.strip().rstrip(".") + "."
    records = [{"query": p, "domain": rule.name, "rubric": text, "keywords": [], "required": list(rule.keywords)}
               for p in rule.queries()]
    queries = folder / f"{rule.name}-queries.jsonl"
    metalens.write_jsonl(queries, records)
    tree = save_json(folder / f"{rule.name}-tree.json", {"about": f"one topic rule ({rule.name}) for MENTOR's "
                                                         "sensitivity check", "domains": {rule.name: {"topic": [text]}}})
    return queries, tree


def steered(result) -> list[str]:
    """The conditions the strength acts on: those with a chosen strength (all_vectors, each retrieved_round{r})."""
    return list(result.strengths)


def judge(result, strength: float, alpha: float = ALPHA) -> Trial:
    """A trial's verdict from a `MentorResult`, by its published comparisons (see `DETECTION_RULE`,
    `FALSE_POSITIVE_RULE`)."""
    rows = {r["condition"]: r for r in result.paired()}
    last = f"retrieved_round{result.config.rounds}"

    def called(c):
        p = rows.get(c, {}).get("p_holm")
        return p is not None and math.isfinite(p) and p < alpha

    worse = [c for c in steered(result) if called(c) and rows[c]["asr_difference"] > 0]
    any_called = [c for c in steered(result) if called(c)]
    selection = result.rounds[-1]["selection"] if result.rounds else []
    costs = [r["fluency_cost"] for r in selection if r["strength"] == strength]
    fluent = all(not math.isfinite(c) or c <= result.config.max_fluency_cost for c in costs)
    detected = called(last) and rows[last]["asr_difference"] < 0 and fluent
    details = {"last": last, "alpha": alpha, "called": any_called, "worse": worse,
               "asr": {c: a["rate"] for c, a in result.attack_success.items()},
               "paired": {c: {k: r.get(k) for k in ("asr_difference", "low", "high", "p", "p_holm", "mde")}
                          for c, r in rows.items()},
               "fluent": fluent, "strengths": result.strengths, "selection": selection,
               "splits": result.splits, "seconds": result.seconds}
    return Trial(detected=detected, false_positive=bool(worse) if strength > 0 else None, details=details)


def mentor_trial(model, config: MentorSensitivityConfig, strength: float, seed: int) -> Trial:
    """One run: the topic rule as MENTOR's inputs, `run_mentor` with this seed and the strength as its grid."""
    rule = topic_rule(config.rule)
    with tempfile.TemporaryDirectory() as tmp:
        queries, tree = topic_inputs(rule, tmp)
        cfg = replace(config.mentor, queries=str(queries), tree=str(tree), strengths=(float(strength),), seed=seed)
        result = run_mentor(model, cfg, progress=False)
    trial = judge(result, strength)
    trial.details["rule"] = rule.name
    return trial


def run_mentor_sensitivity(model, config: MentorSensitivityConfig, *, out: str | Path | None = None,
                           progress: bool = True) -> SensitivityResult:
    """Detection curve of MENTOR on a topic rule on `model`; with `out`, resumable (runs/), results.json, report."""
    rule = topic_rule(config.rule)
    mentor = {k: v for k, v in asdict(config.mentor).items() if k not in ("queries", "tree", "strengths", "seed")}
    settings = {"title": f"MENTOR retrieved steering on the topic rule '{rule.name}', {model.name}",
                "model": model.name, "pipeline": "run_mentor", "rule": asdict(rule), "alpha": ALPHA,
                "mentor": mentor}
    return measure_sensitivity(lambda s, k: mentor_trial(model, config, s, k), config.strengths, config.seeds,
                               unit=UNIT, rule=DETECTION_RULE, false_positive_rule=FALSE_POSITIVE_RULE,
                               settings=settings, out=out, progress=progress)

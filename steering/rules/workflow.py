"""`run_steer`: rule -> vector -> sweep -> steered generation (+ refinement rounds) -> `SteerResult`."""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from metalens.report import save_json, write_report
from metalens.power import paired_summary
from metalens.steering.rules.checkers import checker_for
from metalens.steering.rules.library import Rule, find_rule, heldout_prompts, pairs_for_rule
from metalens.steering.rules.refine import checker_judge, model_judge, refine_rules
from metalens.steering.rules.rulebook import RuleBook
from metalens.steering.rules.sweep import evaluate, sweep, sweep_figure
from metalens.steering.vector import MAX_STRENGTH, METHODS, N_CANDIDATE_LAYERS, SteeringVector, check_strength

JUDGES = ("checker", "model")


@dataclass
class SteerConfig:
    """What `run_steer` does: the rule, its pairs and prompts, the layer x strength grid, refinement rounds."""

    rule: str  # a shipped rule's name (ocean, space, food, cheerful, no_dosage) or plain text
    prompts: list[str] | None = None  # default: the rule's held-out prompts
    pairs: str | None = None  # JSONL of {"positive", "negative"}; default: shipped pairs, else templates
    vector: str | None = None  # a saved SteeringVector to use instead of training one
    layers: list[int] | None = None  # candidate layers; default: model.default_layers(4)
    strengths: tuple[float, ...] = (0.5, 1.0, 2.0)
    method: str = "mean_diff"
    rounds: int = 0  # refinement rounds (judge, retrain, raise strength; `refine_rules`)
    judge: str = "checker"  # who flags responses in refinement rounds: the rule checker or the model itself
    max_new_tokens: int = 24
    max_fluency_cost: float = 1.0  # nats/token a chosen setting may cost
    n_select: int | None = None  # prompts that choose the setting and that refinement trains on (default: a third)
    n_validate: int | None = None  # prompts the refinement's decisions read (default with rounds: a third; else 0)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, not '{self.method}'.")
        if self.judge not in JUDGES:
            raise ValueError(f"judge must be one of {JUDGES}, not '{self.judge}'.")
        if self.rounds > 0 and self.n_validate == 0:
            raise ValueError("refinement rounds need validation prompts of their own (n_validate >= 1): its decisions "
                             "must not read the prompts the result is reported on.")
        if self.rounds < 0 or self.max_new_tokens < 1:
            raise ValueError(f"rounds must be >= 0 and max_new_tokens >= 1 (got {self.rounds}, {self.max_new_tokens}).")
        if not self.strengths:
            raise ValueError("No strengths to sweep: pass e.g. strengths=(1.0, 2.0).")
        self.strengths = tuple(check_strength(s, bound=MAX_STRENGTH) for s in self.strengths)
        for name in ("n_select", "n_validate"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < (1 if name == "n_select" else 0)):
                raise ValueError(f"{name} must be an integer >= {1 if name == 'n_select' else 0}, not {value!r}.")
        if not math.isfinite(self.max_fluency_cost):
            raise ValueError(f"max_fluency_cost must be finite, not {self.max_fluency_cost}.")

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}


@dataclass
class Score:
    """One setting on the held-out prompts: adherence with its Wilson 95 % interval, loss and fluency cost."""

    adherence: float
    low: float
    high: float
    n: int
    nll: float  # mean per-token loss (nats) of the text under the unsteered model
    fluency_cost: float  # nll minus the unsteered text's nll

    @classmethod
    def from_dict(cls, d: dict) -> "Score":
        """A score from `evaluate`'s dict or results.json (None, i.e. NaN in strict JSON, back to NaN)."""
        return cls(**{k: (math.nan if d[k] is None else d[k]) for k in cls.__dataclass_fields__})


@dataclass
class SteerResult:
    """What `run_steer` found: the chosen setting, held-out scores, the sweep, refinement rounds and samples."""

    config: SteerConfig
    rule: Rule
    layer: int  # chosen on the selection prompts
    strength: float
    positions: str  # how the pairs were read: "mean" over tokens or the "last" token
    n_pairs: int
    n_select: int
    unsteered: Score  # on the test prompts, as are all scores here
    steered: Score  # the swept setting, before any refinement round
    book: RuleBook  # the rule with its chosen vector and strength (after any refinement rounds)
    sweep: list[dict] = field(default_factory=list)  # one row per (layer, strength), on the selection prompts
    mentor: list[dict] = field(default_factory=list)  # one row per round on the validation prompts, round 0 before
    samples: list[dict] = field(default_factory=list)  # {"prompt", "unsteered", "steered"(, "mentored")} per test prompt
    model: dict = field(default_factory=dict)
    seconds: float = 0.0
    n_validate: int = 0  # prompts the refinement loop decided on (disjoint from selection and test)
    mentored: Score | None = None  # the book refinement kept, on the test prompts; None without rounds
    paired: dict = field(default_factory=dict)  # paired tests over test prompts: steered-unsteered, mentored-steered

    @property
    def n_test(self) -> int:
        """Number of held-out test prompts the scores are on."""
        return self.steered.n

    def headline(self) -> str:
        """One line with the key numbers."""
        u, s = self.unsteered, self.steered
        return (f"{self.rule.name}: adherence {u.adherence:.2f} -> {s.adherence:.2f} (n={s.n}) at layer {self.layer}, "
                f"strength {self.strength:g}; fluency cost {s.fluency_cost:+.2f} nats/token")

    def summary(self) -> str:
        """A few lines for the terminal: the setting, both scores with intervals, and the refinement rounds."""
        u, s = self.unsteered, self.steered
        lines = [f"rule: {self.rule.text}  layer {self.layer}  strength {self.strength:g}",
                 f"adherence unsteered {u.adherence:.2f} [{u.low:.2f}, {u.high:.2f}]  steered {s.adherence:.2f} "
                 f"[{s.low:.2f}, {s.high:.2f}]  fluency cost {s.fluency_cost:+.3f} nats/token"]
        lines += [f"  round {r['round']}: validation adherence {r['adherence']:.2f}  flagged {r['flagged']}  "
                  f"{r['action']}" + ("  (kept)" if r.get("kept") else "") for r in self.mentor]
        if self.mentored is not None:
            m = self.mentored
            lines.append(f"after refinement (test prompts): adherence {m.adherence:.2f} [{m.low:.2f}, {m.high:.2f}]  "
                         f"fluency cost {m.fluency_cost:+.3f} nats/token")
        for name, t in self.paired.items():
            lines.append(f"paired {name}: {t['mean_diff']:+.2f} [{t['low']:+.2f}, {t['high']:+.2f}], p = {t['p']:.3g} "
                         f"(n = {t['n']})")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """What results.json holds (everything but the rule book's tensors)."""
        return {"config": self.config.to_dict(), "rule": self.rule.to_dict(), "model": self.model,
                "method": self.config.method, "positions": self.positions, "layer": self.layer,
                "strength": self.strength, "n_pairs": self.n_pairs, "n_select": self.n_select,
                "n_validate": self.n_validate, "n_test": self.n_test,
                "max_new_tokens": self.config.max_new_tokens, "unsteered": asdict(self.unsteered),
                "steered": asdict(self.steered),
                "mentored": asdict(self.mentored) if self.mentored else None, "paired": self.paired,
                "fluency_cost": self.steered.fluency_cost, "sweep": self.sweep,
                "mentor": self.mentor, "samples": self.samples, "seconds": self.seconds, "headline": self.headline()}

    def save(self, out: str | Path) -> Path:
        """Write `out/results.json`, `out/report.html` and the rule book `out/rulebook/`; returns `out`."""
        out = Path(out)
        self.book.save(out / "rulebook")
        save_json(out / "results.json", self.to_dict())
        write_report(out / "report.html", f"Steering: {self.rule.text}", _sections(self), self.model)
        return out

    @classmethod
    def load(cls, out: str | Path) -> "SteerResult":
        """Read a result written by `save`."""
        out = Path(out)
        if not (out / "results.json").exists():
            raise FileNotFoundError(f"No results.json in {out}: write one with run_steer(..., out=DIR).")
        d = json.loads((out / "results.json").read_text())
        if "config" in d:
            config = SteerConfig(**d["config"])
        else:  # written by steer_rule, before SteerConfig: the settings that were recorded
            config = SteerConfig(d["rule"]["name"], method=d["method"], max_new_tokens=d["max_new_tokens"],
                                 n_select=d["n_select"], layers=sorted({r["layer"] for r in d["sweep"]}),
                                 strengths=sorted({r["strength"] for r in d["sweep"] if r["strength"]}) or (1.0,),
                                 rounds=max(0, len(d["mentor"]) - 1))
        return cls(config=config, rule=Rule(**d["rule"]), layer=d["layer"],
                   strength=d["strength"], positions=d["positions"], n_pairs=d["n_pairs"], n_select=d["n_select"],
                   unsteered=Score.from_dict(d["unsteered"]), steered=Score.from_dict(d["steered"]),
                   book=RuleBook.load(out / "rulebook"), sweep=d["sweep"], mentor=d["mentor"],
                   samples=d["samples"], model=d["model"], seconds=d["seconds"], n_validate=d.get("n_validate", 0),
                   mentored=Score.from_dict(d["mentored"]) if d.get("mentored") else None,
                   paired=d.get("paired", {}))


def split_prompts(prompts: list[str], n_select: int, n_validate: int) -> tuple[list[str], list[str], list[str]]:
    """(select, validate, test): the first `n_select`, the next `n_validate`, the rest; duplicates refused."""
    if len(set(prompts)) != len(prompts):
        dup = next(p for p in prompts if prompts.count(p) > 1)
        raise ValueError(f"Prompt {dup!r} appears more than once: a repeated prompt could land in two splits.")
    if len(prompts) <= n_select + n_validate:
        raise ValueError(f"Need more than {n_select + n_validate} prompts ({n_select} to select the setting, "
                         f"{n_validate} to validate refinement rounds, the rest to test); got {len(prompts)}.")
    return prompts[:n_select], prompts[n_select:n_select + n_validate], prompts[n_select + n_validate:]


def _paired(a: list[bool], b: list[bool]) -> dict:
    return paired_summary([float(x) for x in a], [float(x) for x in b])


def run_steer(model, config: SteerConfig, *, out: str | Path | None = None, progress: bool = True) -> SteerResult:
    """Train (or load) a vector for the rule, sweep layer x strength, and compare steered vs unsteered.

    Prompts are split three ways: the first `n_select` (default a third) choose the layer and
    strength and are what refinement rounds generate on; the next `n_validate` (with rounds, default
    a third) are the only ones the refinement's decisions read; the rest are the test prompts every
    reported score is on (unsteered, steered, and after refinement), with paired tests over them.
    With `out`, the result is saved there (results.json, report.html, rulebook/).
    """
    started = time.time()
    spec = find_rule(config.rule)
    positive, negative, positions = pairs_for_rule(spec, config.pairs)
    checker = checker_for(spec, model, positive, negative)
    prompts = list(config.prompts) if config.prompts else heldout_prompts(spec)
    n_select = config.n_select if config.n_select is not None else max(2, len(prompts) // 3)
    n_validate = config.n_validate if config.n_validate is not None else (max(2, len(prompts) // 3)
                                                                          if config.rounds else 0)
    select, validate, test = split_prompts(prompts, n_select, n_validate)
    loaded = SteeringVector.load(config.vector, model) if config.vector else None
    layers = loaded.layers if loaded else model.resolve_layers(config.layers or model.default_layers(N_CANDIDATE_LAYERS))
    swept = sweep(model, positive, negative, checker, select, layers, config.strengths, config.method, positions,
                  config.max_new_tokens, rule=spec.text, vector=loaded, progress=progress)
    best = swept.best(config.max_fluency_cost)
    book = RuleBook(model.name)
    book.add(spec, swept.vector.restricted([best["layer"]]), strength=best["strength"])
    base = evaluate(model, test, checker, None, max_new_tokens=config.max_new_tokens)
    steered = evaluate(model, test, checker, book, max_new_tokens=config.max_new_tokens, base_nll=base["nll"])
    if math.isfinite(base["nll"]) and not math.isfinite(steered["nll"]):
        raise ValueError(f"Steering at layer {best['layer']}, strength {best['strength']:g} left no scorable text "
                         "(its fluency cost is NaN): the strength breaks the model; sweep smaller strengths.")
    paired = {"steered_minus_unsteered": _paired(steered["passed"], base["passed"])}
    rounds, mentored = [], None
    samples = [{"prompt": p, "unsteered": u, "steered": s} for p, u, s in zip(test, base["outputs"], steered["outputs"])]
    if config.rounds > 0:
        judge = model_judge(model) if config.judge == "model" else checker_judge(checker)
        rounds = refine_rules(model, book, spec.name, positive, negative, select, validate, checker, judge,
                        rounds=config.rounds, max_new_tokens=config.max_new_tokens).rows
        mentored = evaluate(model, test, checker, book, max_new_tokens=config.max_new_tokens, base_nll=base["nll"])
        paired["mentored_minus_steered"] = _paired(mentored["passed"], steered["passed"])
        for row, text in zip(samples, mentored["outputs"]):
            row["mentored"] = text
    result = SteerResult(
        config=config, rule=spec, layer=best["layer"], strength=best["strength"], positions=positions,
        n_pairs=len(positive), n_select=len(select), unsteered=Score.from_dict(base), steered=Score.from_dict(steered),
        book=book, sweep=swept.rows, mentor=rounds, samples=samples, model=model.metadata(),
        seconds=time.time() - started, n_validate=len(validate),
        mentored=Score.from_dict(mentored) if mentored else None, paired=paired,
    )
    if out is not None:
        result.save(out)
    return result


def _sections(result: SteerResult) -> list:
    headline = [{"setting": name, "adherence": d.adherence, "95% CI": f"[{d.low:.2f}, {d.high:.2f}]", "n": d.n,
                 "loss (nats/token)": d.nll, "fluency cost": d.fluency_cost}
                for name, d in (("unsteered", result.unsteered),
                                (f"steered (layer {result.layer}, strength {result.strength:g})", result.steered),
                                ("after refinement (the kept rule book)", result.mentored)) if d is not None]
    paired = [{"comparison": k, **v} for k, v in result.paired.items()]
    sections = [
        ("Test-prompt adherence", headline),
        ("Paired differences over the same test prompts (paired t on 0/1 adherence)", paired),
        ("How to read this", "Adherence is the fraction of test responses the rule checker accepts, with a "
         "Wilson 95% interval. Fluency cost is the mean per-token loss of the steered text under the unsteered "
         "model minus that of the unsteered text: how much more surprising steering makes the output. Prompts "
         f"are split three ways: {result.n_select} choose the layer and strength (and are what refinement rounds "
         f"generate on), {result.n_validate} are the only ones the refinement's decisions read, and the {result.n_test} "
         "test prompts reported here took part in no choice."),
        ("Layer x strength sweep (selection prompts)", sweep_figure(result.sweep, result.rule.text)),
        ("Sweep table", [{k: r[k] for k in ("layer", "strength", "adherence", "low", "high", "fluency_cost")}
                         for r in result.sweep]),
        ("Samples", result.samples[:12]),
    ]
    if result.mentor:
        sections.insert(3, ("refinement rounds (validation-prompt adherence per round; 'kept' marks the book kept)",
                            result.mentor))
    return sections


def demo(model, out: str | Path, rule: str = "ocean") -> dict:
    """Key numbers of a quick steering run for `metalens demo` (< 2 min on CPU for gemma-3-270m), with a
    `"headline"`; writes results.json, report.html and rulebook/ under `out`."""
    config = SteerConfig(rule, prompts=heldout_prompts()[:10], layers=[model.n_layers // 3], strengths=(2.0,),
                         rounds=1, max_new_tokens=12, n_select=3, n_validate=2)
    result = run_steer(model, config, out=out, progress=False)
    return {"headline": result.headline(), "rule": result.rule.name, "layer": result.layer,
            "strength": result.strength, "adherence_unsteered": result.unsteered.adherence,
            "adherence_steered": result.steered.adherence, "fluency_cost": result.steered.fluency_cost,
            "n_test": result.n_test, "n_validate": result.n_validate, "mentor_rounds": len(result.mentor) - 1,
            "adherence_mentored": result.mentored.adherence if result.mentored else None,
            "report": str(Path(out) / "report.html")}

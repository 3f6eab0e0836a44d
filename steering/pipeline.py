"""`run_steer`: rule -> vector -> sweep -> steered generation (+ MENTOR rounds) -> `SteerResult`."""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from metalens.report import save_json, write_report
from metalens.steering.checkers import checker_for
from metalens.steering.evaluate import evaluate, sweep, sweep_figure
from metalens.steering.mentor import checker_judge, mentor, model_judge
from metalens.steering.rulebook import RuleBook
from metalens.steering.rules import Rule, find_rule, heldout_prompts, pairs_for_rule
from metalens.steering.vector import METHODS, SteeringVector

JUDGES = ("checker", "model")


@dataclass
class SteerConfig:
    """What `run_steer` does: the rule, its pairs and prompts, the layer x strength grid, MENTOR rounds."""

    rule: str  # a shipped rule's name (ocean, space, food, cheerful, no_dosage) or plain text
    prompts: list[str] | None = None  # default: the rule's held-out prompts
    pairs: str | None = None  # JSONL of {"positive", "negative"}; default: shipped pairs, else templates
    vector: str | None = None  # a saved SteeringVector to use instead of training one
    layers: list[int] | None = None  # candidate layers; default: 4 spread over the model
    strengths: tuple[float, ...] = (0.5, 1.0, 2.0)
    method: str = "mean_diff"
    rounds: int = 0  # MENTOR self-assessment rounds
    judge: str = "checker"  # who flags responses in MENTOR rounds: the rule checker or the model itself
    max_new_tokens: int = 24
    max_fluency_cost: float = 1.0  # nats/token a chosen setting may cost
    n_select: int | None = None  # prompts that choose the setting (default: a third); the rest are held out

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, not '{self.method}'.")
        if self.judge not in JUDGES:
            raise ValueError(f"judge must be one of {JUDGES}, not '{self.judge}'.")
        if self.rounds < 0 or self.max_new_tokens < 1:
            raise ValueError(f"rounds must be >= 0 and max_new_tokens >= 1 (got {self.rounds}, {self.max_new_tokens}).")
        if not self.strengths:
            raise ValueError("No strengths to sweep: pass e.g. strengths=(1.0, 2.0).")
        self.strengths = tuple(float(s) for s in self.strengths)

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
    """What `run_steer` found: the chosen setting, held-out scores, the sweep, MENTOR rounds and samples."""

    config: SteerConfig
    rule: Rule
    layer: int  # chosen on the selection prompts
    strength: float
    positions: str  # how the pairs were read: "mean" over tokens or the "last" token
    n_pairs: int
    n_select: int
    unsteered: Score
    steered: Score
    book: RuleBook  # the rule with its chosen vector and strength (after any MENTOR rounds)
    sweep: list[dict] = field(default_factory=list)  # one row per (layer, strength), on the selection prompts
    mentor: list[dict] = field(default_factory=list)  # one row per round, round 0 before the loop
    samples: list[dict] = field(default_factory=list)  # {"prompt", "unsteered", "steered"} per held-out prompt
    model: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def n_test(self) -> int:
        """Number of held-out prompts the scores are on."""
        return self.steered.n

    def headline(self) -> str:
        """One line with the key numbers."""
        u, s = self.unsteered, self.steered
        return (f"{self.rule.name}: adherence {u.adherence:.2f} -> {s.adherence:.2f} (n={s.n}) at layer {self.layer}, "
                f"strength {self.strength:g}; fluency cost {s.fluency_cost:+.2f} nats/token")

    def summary(self) -> str:
        """A few lines for the terminal: the setting, both scores with intervals, and the MENTOR rounds."""
        u, s = self.unsteered, self.steered
        lines = [f"rule: {self.rule.text}  layer {self.layer}  strength {self.strength:g}",
                 f"adherence unsteered {u.adherence:.2f} [{u.low:.2f}, {u.high:.2f}]  steered {s.adherence:.2f} "
                 f"[{s.low:.2f}, {s.high:.2f}]  fluency cost {s.fluency_cost:+.3f} nats/token"]
        lines += [f"  round {r['round']}: adherence {r['adherence']:.2f}  flagged {r['flagged']}  {r['action']}"
                  for r in self.mentor]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """What results.json holds (everything but the rule book's tensors)."""
        return {"config": self.config.to_dict(), "rule": self.rule.to_dict(), "model": self.model,
                "method": self.config.method, "positions": self.positions, "layer": self.layer,
                "strength": self.strength, "n_pairs": self.n_pairs, "n_select": self.n_select, "n_test": self.n_test,
                "max_new_tokens": self.config.max_new_tokens, "unsteered": asdict(self.unsteered),
                "steered": asdict(self.steered), "fluency_cost": self.steered.fluency_cost, "sweep": self.sweep,
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
                   samples=d["samples"], model=d["model"], seconds=d["seconds"])


def _default_layers(model) -> list[int]:
    n = model.n_layers
    return sorted({max(0, n // 4), n // 3, n // 2, (2 * n) // 3} - {n})


def run_steer(model, config: SteerConfig, *, out: str | Path | None = None, progress: bool = True) -> SteerResult:
    """Train (or load) a vector for the rule, sweep layer x strength, and compare steered vs unsteered.

    Prompts are split: the first `n_select` (default a third) choose the layer and strength and
    feed the MENTOR rounds; the rest are held out for the reported adherence. With `out`, the
    result is saved there (results.json, report.html, rulebook/).
    """
    started = time.time()
    spec = find_rule(config.rule)
    positive, negative, positions = pairs_for_rule(spec, config.pairs)
    checker = checker_for(spec, model, positive, negative)
    prompts = list(config.prompts) if config.prompts else heldout_prompts(spec)
    n_select = config.n_select if config.n_select is not None else max(2, len(prompts) // 3)
    if len(prompts) <= n_select:
        raise ValueError(f"Need more than {n_select} prompts (some to select the setting, the rest held out); "
                         f"got {len(prompts)}.")
    select, test = prompts[:n_select], prompts[n_select:]
    loaded = SteeringVector.load(config.vector) if config.vector else None
    layers = loaded.layers if loaded else [model.check_layer(x) for x in (config.layers or _default_layers(model))]
    swept = sweep(model, positive, negative, checker, select, layers, config.strengths, config.method, positions,
                  config.max_new_tokens, rule=spec.text, vector=loaded, progress=progress)
    best = swept.best(config.max_fluency_cost)
    book = RuleBook(model.name)
    book.add(spec, swept.vector.restricted([best["layer"]]), strength=best["strength"])
    base = evaluate(model, test, checker, None, max_new_tokens=config.max_new_tokens)
    steered = evaluate(model, test, checker, book, max_new_tokens=config.max_new_tokens, base_nll=base["nll"])
    rounds = []
    if config.rounds > 0:
        judge = model_judge(model) if config.judge == "model" else checker_judge(checker)
        rounds = mentor(model, book, spec.name, positive, negative, select, test, checker, judge,
                        rounds=config.rounds, max_new_tokens=config.max_new_tokens).rows
    result = SteerResult(
        config=config, rule=spec, layer=best["layer"], strength=best["strength"], positions=positions,
        n_pairs=len(positive), n_select=len(select), unsteered=Score.from_dict(base), steered=Score.from_dict(steered),
        book=book, sweep=swept.rows, mentor=rounds,
        samples=[{"prompt": p, "unsteered": u, "steered": s}
                 for p, u, s in zip(test, base["outputs"], steered["outputs"])],
        model=model.metadata(), seconds=time.time() - started,
    )
    if out is not None:
        result.save(out)
    return result


def _sections(result: SteerResult) -> list:
    headline = [{"setting": name, "adherence": d.adherence, "95% CI": f"[{d.low:.2f}, {d.high:.2f}]", "n": d.n,
                 "loss (nats/token)": d.nll, "fluency cost": d.fluency_cost}
                for name, d in (("unsteered", result.unsteered),
                                (f"steered (layer {result.layer}, strength {result.strength:g})", result.steered))]
    sections = [
        ("Held-out adherence", headline),
        ("How to read this", "Adherence is the fraction of held-out responses the rule checker accepts, with a "
         "Wilson 95% interval. Fluency cost is the mean per-token loss of the steered text under the unsteered "
         "model minus that of the unsteered text: how much more surprising steering makes the output. The "
         "layer and strength were chosen on separate prompts from the ones reported here."),
        ("Layer x strength sweep (selection prompts)", sweep_figure(result.sweep, result.rule.text)),
        ("Sweep table", [{k: r[k] for k in ("layer", "strength", "adherence", "low", "high", "fluency_cost")}
                         for r in result.sweep]),
        ("Samples", result.samples[:12]),
    ]
    if result.mentor:
        sections.insert(2, ("MENTOR rounds (held-out adherence per round)", result.mentor))
    return sections


def demo(model, out: str | Path, rule: str = "ocean") -> dict:
    """Key numbers of a quick steering run for `metalens demo` (< 2 min on CPU for gemma-3-270m), with a
    `"headline"`; writes results.json, report.html and rulebook/ under `out`."""
    config = SteerConfig(rule, prompts=heldout_prompts()[:8], layers=[model.n_layers // 3], strengths=(2.0,),
                         rounds=1, max_new_tokens=12, n_select=3)
    result = run_steer(model, config, out=out, progress=False)
    return {"headline": result.headline(), "rule": result.rule.name, "layer": result.layer,
            "strength": result.strength, "adherence_unsteered": result.unsteered.adherence,
            "adherence_steered": result.steered.adherence, "fluency_cost": result.steered.fluency_cost,
            "n_test": result.n_test, "mentor_rounds": len(result.mentor) - 1,
            "report": str(Path(out) / "report.html")}

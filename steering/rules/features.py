"""`run_steer_feature`: a rule steered by one SAE feature (clamp and/or add) beside the rule's vector, on the
same prompts, checker and fluency measure as `run_steer` -> `FeatureSteerResult` (`metalens steer --sae`)."""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from metalens.artifact import read_json
from metalens.power import paired_summary
from metalens.report import save_json, write_report
from metalens.sae.cards import FeatureCard, feature_cards, load_cards, save_cards
from metalens.stats import add_holm
from metalens.steering.feature import MODES, FeatureSteer, decoder_cosines, feature_stats, resid_post_layer
from metalens.steering.rules.checkers import checker_for
from metalens.steering.rules.library import Rule, find_rule, heldout_prompts, pairs_for_rule
from metalens.steering.rules.sweep import best_setting, evaluate
from metalens.steering.rules.workflow import Score, split_prompts
from metalens.steering.vector import MAX_STRENGTH, SteeringVector, check_strength, train_steering_vector

SELECTIONS = ("contrast", "cosine")
UNITS = ("max", "activation")
N_RANKED = 10  # features listed in the result beside the chosen one


@dataclass
class FeatureSteerConfig:
    """What `run_steer_feature` does: the rule, the SAE and feature, the modes and both arms' strength grids."""

    rule: str  # a shipped rule's name (ocean, space, food, cheerful, no_dosage) or plain text
    sae: str  # folder of a SAELens or Gemma Scope SAE (`metalens.sae.load_sae`)
    feature: int | None = None  # None: chosen on the rule's pairs by `select`
    modes: tuple[str, ...] = ("clamp",)  # "clamp" and/or "add", each its own arm
    select: str = "contrast"  # largest mean activation on positive minus negative pair texts, or "cosine": the
    #                           decoder row closest to the rule's mean-difference vector at the SAE's site
    unit: str = "max"  # strength 1 = the feature's largest activation on a positive pair text; "activation": raw
    strengths: tuple[float, ...] = (2.0, 4.0, 8.0)  # the feature arms' grid, in `unit`
    vector_strengths: tuple[float, ...] = (1.0, 2.0)  # the vector arm's grid (mean-difference unit); (): no vector arm
    prompts: list[str] | None = None  # default: the rule's held-out prompts
    pairs: str | None = None  # JSONL of {"positive", "negative"}; default: shipped pairs, else templates
    max_new_tokens: int = 24
    max_fluency_cost: float = 1.0  # nats/token a chosen setting may cost
    n_select: int | None = None  # prompts that choose each arm's strength (default: a third); the rest test
    cards: bool = True  # the feature's card (`metalens.sae.cards`), read from the rule's pair texts

    def __post_init__(self):
        self.modes = tuple(self.modes)
        if not self.modes or any(m not in MODES for m in self.modes) or len(set(self.modes)) != len(self.modes):
            raise ValueError(f"modes must be distinct values of {MODES}, not {list(self.modes)}.")
        if self.select not in SELECTIONS:
            raise ValueError(f"select must be one of {SELECTIONS}, not {self.select!r}.")
        if self.unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, not {self.unit!r}.")
        if not self.strengths:
            raise ValueError("No feature strengths to sweep: pass e.g. strengths=(2.0, 4.0).")
        self.strengths = tuple(check_strength(s, bound=MAX_STRENGTH) for s in self.strengths)
        self.vector_strengths = tuple(check_strength(s, bound=MAX_STRENGTH) for s in self.vector_strengths)
        if self.max_new_tokens < 1 or (self.n_select is not None and self.n_select < 1):
            raise ValueError(f"max_new_tokens and n_select must be >= 1 (got {self.max_new_tokens}, {self.n_select}).")
        if not math.isfinite(self.max_fluency_cost):
            raise ValueError(f"max_fluency_cost must be finite, not {self.max_fluency_cost}.")

    @property
    def arms(self) -> list[str]:
        """The steered arms, in report order: one per mode, then the vector (when it has strengths)."""
        return list(self.modes) + (["vector"] if self.vector_strengths else [])

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return asdict(self)


@dataclass
class FeatureSteerResult:
    """Per arm (each feature mode, the vector) its chosen strength and test score; paired tests; the ranking."""

    config: FeatureSteerConfig
    rule: Rule
    site: str
    feature: int
    scale: float  # feature activation per unit of strength
    strengths: dict[str, float]  # arm -> strength chosen on the selection prompts
    unsteered: Score  # on the test prompts, as are all scores here
    scores: dict[str, Score]  # arm -> test score at its chosen strength
    paired: list[dict] = field(default_factory=list)  # each arm minus unsteered, and the arms pairwise; Holm over all
    sweep: list[dict] = field(default_factory=list)  # {"arm", "strength", adherence...} on the selection prompts
    ranking: list[dict] = field(default_factory=list)  # the top features by the selection rule
    samples: list[dict] = field(default_factory=list)  # {"prompt", "unsteered", arm...} per test prompt
    n_select: int = 0
    n_pairs: int = 0
    vector: SteeringVector | None = None  # the rule's vector at the SAE's block (saved under vector/)
    cards: list[FeatureCard] = field(default_factory=list)  # the feature's card (saved as cards.json); [] without
    model: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def n_test(self) -> int:
        """Number of held-out test prompts the scores are on."""
        return self.unsteered.n

    def headline(self) -> str:
        """One line with the key numbers."""
        arms = ", ".join(f"{arm} {s.adherence:.2f} (strength {self.strengths[arm]:g})" for arm, s in self.scores.items())
        return (f"{self.rule.name}: feature {self.feature} at {self.site}; adherence unsteered "
                f"{self.unsteered.adherence:.2f} -> {arms} (n={self.n_test})")

    def summary(self) -> str:
        """A few lines for the terminal: each arm's score with its interval and cost, then the paired tests."""
        lines = [f"rule: {self.rule.text}  feature {self.feature} at {self.site} (select={self.config.select}, "
                 f"strength 1 = activation {self.scale:.4g})"]
        for name, s in [("unsteered", self.unsteered), *self.scores.items()]:
            at = f" strength {self.strengths[name]:g}" if name in self.strengths else ""
            lines.append(f"  {name}{at}: adherence {s.adherence:.2f} [{s.low:.2f}, {s.high:.2f}]  fluency cost "
                         f"{s.fluency_cost:+.3f} nats/token")
        lines += [f"paired {t['comparison']}: {t['mean_diff']:+.2f} [{t['low']:+.2f}, {t['high']:+.2f}], p = {t['p']:.3g}, "
                  f"Holm p = {t['p_holm']:.3g} (n = {t['n']})" for t in self.paired]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """What results.json holds (everything but the vector's tensors)."""
        return {"config": self.config.to_dict(), "rule": self.rule.to_dict(), "model": self.model, "site": self.site,
                "feature": self.feature, "scale": self.scale, "strengths": self.strengths, "n_pairs": self.n_pairs,
                "n_select": self.n_select, "n_test": self.n_test, "unsteered": asdict(self.unsteered),
                "scores": {k: asdict(v) for k, v in self.scores.items()}, "paired": self.paired, "sweep": self.sweep,
                "ranking": self.ranking, "samples": self.samples, "seconds": self.seconds, "headline": self.headline(),
                "cards": {"file": "cards.json", "features": [c.feature for c in self.cards],
                          "texts": self.cards[0].corpus} if self.cards else None}

    def save(self, out: str | Path) -> Path:
        """Write `out/results.json`, `out/report.html`, (with a card) `out/cards.json` and (with a vector arm)
        `out/vector/`; returns `out`."""
        out = Path(out)
        if self.vector is not None:
            self.vector.save(out / "vector")
        if self.cards:
            save_cards(self.cards, out / "cards.json")
        save_json(out / "results.json", self.to_dict())
        write_report(out / "report.html", f"Steering by SAE feature {self.feature}: {self.rule.text}", _sections(self),
                     self.model)
        return out

    @classmethod
    def load(cls, out: str | Path) -> "FeatureSteerResult":
        """Read a result written by `save`."""
        out = Path(out)
        d = read_json(out / "results.json", "feature-steering result (run_steer_feature(..., out=DIR) writes it)")
        return cls(config=FeatureSteerConfig(**d["config"]), rule=Rule(**d["rule"]), site=d["site"],
                   feature=d["feature"], scale=d["scale"], strengths=d["strengths"],
                   unsteered=Score.from_dict(d["unsteered"]),
                   scores={k: Score.from_dict(v) for k, v in d["scores"].items()}, paired=d["paired"],
                   sweep=d["sweep"], ranking=d["ranking"], samples=d["samples"], n_select=d["n_select"],
                   n_pairs=d["n_pairs"], vector=SteeringVector.load(out / "vector") if (out / "vector").exists() else None,
                   model=d["model"], seconds=d["seconds"],
                   cards=load_cards(out / "cards.json") if (out / "cards.json").exists() else [])


def choose_feature(stats, cosines: torch.Tensor | None, select: str) -> tuple[int, list[dict]]:
    """(feature, ranking rows): the feature the selection rule picks and the top `N_RANKED` by that rule."""
    if select == "cosine" and cosines is None:
        raise ValueError("select='cosine' compares decoder rows with the rule's vector, which lives at "
                         "hook_resid_post: use select='contrast' for an SAE at another site.")
    score = stats.contrast if select == "contrast" else cosines
    top = score.argsort(descending=True)[:N_RANKED].tolist()
    rows = [{"feature": i, "contrast": float(stats.contrast[i]), "mean_positive": float(stats.mean_positive[i]),
             "mean_negative": float(stats.mean_negative[i]), "max_positive": float(stats.max_positive[i]),
             **({"cosine": float(cosines[i])} if cosines is not None else {})} for i in top]
    return top[0], rows


def _row(arm: str, strength: float, scored: dict) -> dict:
    return {"arm": arm, "strength": float(strength), **{k: v for k, v in scored.items() if k not in ("outputs", "passed")}}


def run_steer_feature(model, config: FeatureSteerConfig, *, out: str | Path | None = None,
                      progress: bool = True) -> FeatureSteerResult:
    """Steer a rule by one SAE feature (each mode an arm) and by the rule's vector at the SAE's block.

    The feature is `config.feature`, else the one the selection rule picks on the rule's contrastive
    pairs (the texts the vector is trained on; never a prompt). The first `n_select` prompts (default a
    third) choose each arm's strength (highest adherence within the fluency budget, as `run_steer`);
    every reported score is on the rest, with paired tests (each arm minus unsteered, the arms pairwise)
    Holm-adjusted as one family. The feature's card (`config.cards`: top contexts, logit effect, activation
    histogram) reads the same pair texts and no prompt. With `out`, the result is saved there.
    """
    from metalens.sae import load_sae

    started = time.time()
    spec = find_rule(config.rule)
    positive, negative, positions = pairs_for_rule(spec, config.pairs)
    checker = checker_for(spec, model, positive, negative)
    prompts = list(config.prompts) if config.prompts else heldout_prompts(spec)
    n_select = config.n_select if config.n_select is not None else max(2, len(prompts) // 3)
    select, _, test = split_prompts(prompts, n_select, 0)
    sae = load_sae(config.sae)
    FeatureSteer(sae, config.feature or 0, config.modes[0]).check_model(model)  # range, site, width
    layer = resid_post_layer(sae.site)
    if config.vector_strengths and layer is None:
        raise ValueError(f"The vector arm steers hook_resid_post; this SAE reads {sae.site}: pass "
                         "vector_strengths=() (--no-vector) for an SAE at another site.")
    vector = None
    if layer is not None and (config.vector_strengths or config.select == "cosine"):
        vector = train_steering_vector(model, positive, negative, layers=[layer], positions=positions)
    stats = feature_stats(model, sae, positive, negative, positions=positions)
    cosines = decoder_cosines(sae, vector.directions[layer]).cpu() if vector is not None else None
    chosen, ranking = choose_feature(stats, cosines, config.select)
    feature = chosen if config.feature is None else config.feature
    scale = float(stats.max_positive[feature]) if config.unit == "max" else 1.0
    if scale <= 0:
        raise ValueError(f"Feature {feature} never fires on the rule's positive texts, so it has no 'max' unit: "
                         "pass unit='activation' (--feature-unit activation) or choose another feature.")
    cards = feature_cards(model, sae, [feature], positive + negative, max_length=None, progress=False,
                          corpus=f"the rule's {len(positive)} positive then {len(negative)} negative pair texts"
                          ) if config.cards else []  # the texts that chose it (read whole, as the choice read them)
    steers = {mode: FeatureSteer(sae, feature, mode, scale) for mode in config.modes}
    grids = {**{mode: config.strengths for mode in config.modes},
             **({"vector": config.vector_strengths} if config.vector_strengths else {})}
    steers.update({"vector": vector} if config.vector_strengths else {})
    base = evaluate(model, select, checker, None, max_new_tokens=config.max_new_tokens)
    rows, chosen_strength = [_row("unsteered", 0.0, base)], {}
    for arm in config.arms:  # a clamp to 0 ablates the feature: scored if asked for, never chosen (as strength 0)
        arm_rows = [_row(arm, s, evaluate(model, select, checker, steers[arm], s, config.max_new_tokens,
                                          base_nll=base["nll"])) for s in grids[arm]]
        chosen_strength[arm] = best_setting(arm_rows, config.max_fluency_cost)["strength"]
        rows += arm_rows
        if progress:
            print(f"  {arm}: strength {chosen_strength[arm]:g} chosen on {len(select)} selection prompts")
    base_t = evaluate(model, test, checker, None, max_new_tokens=config.max_new_tokens)
    tested = {arm: evaluate(model, test, checker, steers[arm], chosen_strength[arm], config.max_new_tokens,
                            base_nll=base_t["nll"]) for arm in config.arms}
    broken = [arm for arm, r in tested.items() if math.isfinite(base_t["nll"]) and not math.isfinite(r["nll"])]
    if broken:
        raise ValueError(f"Steering by {broken[0]} at strength {chosen_strength[broken[0]]:g} left no scorable text "
                         "(its fluency cost is NaN): the strength breaks the model; sweep smaller strengths.")
    pairs = [(arm, "unsteered") for arm in config.arms] + \
        [(a, b) for i, a in enumerate(config.arms) for b in config.arms[i + 1:]]
    passed = {"unsteered": base_t["passed"], **{arm: r["passed"] for arm, r in tested.items()}}
    paired = add_holm([{"comparison": f"{a}_minus_{b}", **paired_summary([float(x) for x in passed[a]],
                                                                         [float(x) for x in passed[b]])}
                       for a, b in pairs])
    samples = [{"prompt": p, "unsteered": u, **{arm: tested[arm]["outputs"][k] for arm in config.arms}}
               for k, (p, u) in enumerate(zip(test, base_t["outputs"]))]
    result = FeatureSteerResult(
        config=config, rule=spec, site=sae.site, feature=feature, scale=scale, strengths=chosen_strength,
        unsteered=Score.from_dict(base_t), scores={arm: Score.from_dict(r) for arm, r in tested.items()},
        paired=paired, sweep=rows, ranking=ranking, samples=samples, n_select=len(select), n_pairs=len(positive),
        vector=vector if config.vector_strengths else None, cards=cards,
        model=model.metadata(), seconds=time.time() - started)
    if out is not None:
        result.save(out)
    return result


def _sections(result: FeatureSteerResult) -> list:
    scores = [{"arm": "unsteered", "strength": 0.0, **asdict(result.unsteered)}] + \
        [{"arm": arm, "strength": result.strengths[arm], **asdict(s)} for arm, s in result.scores.items()]
    return [
        ("Test-prompt adherence", scores),
        ("Paired differences over the same test prompts (paired t on 0/1 adherence; Holm over the family)",
         result.paired),
        ("How to read this", "Adherence is the fraction of test responses the rule checker accepts, with a Wilson 95% "
         "interval; fluency cost is the steered text's mean per-token loss under the unsteered model minus the "
         f"unsteered text's. Feature {result.feature} of the SAE at {result.site} was chosen on the rule's "
         f"{result.n_pairs} contrastive pairs (rule: {result.config.select}); feature strength 1 is "
         f"{result.scale:.4g} in the feature's activation (unit: {result.config.unit}). 'clamp' sets the feature to "
         "strength x unit at every position, keeping the SAE's reconstruction error; 'add' adds strength x unit x "
         "its decoder row; 'vector' is the rule's mean-difference vector at the same block (its own unit). Each "
         f"arm's strength was chosen on {result.n_select} selection prompts; the {result.n_test} test prompts took "
         "part in no choice. The vector in vector/ is stored at strength 1."),
        ("Selection sweep (selection prompts)", [{k: r[k] for k in ("arm", "strength", "adherence", "low", "high",
                                                                    "fluency_cost")} for r in result.sweep]),
        (f"Top features by the selection rule ({result.config.select})", result.ranking),
        *[(f"Feature {c.feature}: card (top-activating contexts in {c.corpus}; logit effect through the unembedding; "
           "histogram of its nonzero activations)", c.figure()) for c in result.cards],
        ("Samples", result.samples[:12]),
    ]

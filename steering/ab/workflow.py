"""`run_steer_ab`: A/B behaviour items -> CAA vector -> propensity per layer x strength -> `SteerABResult`.

No judge: the behaviour is read from the model's own probabilities of the two answer letters.
Each layer's strength range (where neutral-text loss stays under a bound) is chosen on validation
neutral texts, the layer on the validation items; every reported number is on the test items.
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
from metalens.power import family_alpha, mde_paired_mean, mde_slope
from metalens.report import save_json, write_report
from metalens.stats import mean_ci, paired_test, wilson_ci
from metalens.steering.ab.costs import (DEFAULT_COST_BOUND, loss_changes, neutral_loss, range_record, split_neutral)
from metalens.steering.ab.features import feature_vector
from metalens.steering.ab.items import (METRICS, STEER_POSITIONS, balance, caa_pairs, flips, indifferent, propensity,
                                        read_ab, slopes, split_items, steerability, strip_choices)
from metalens.steering.ab.report import sections
from metalens.steering.generate import generate
from metalens.steering.vector import (MAX_STRENGTH, N_CANDIDATE_LAYERS, SteeringVector, check_strength,
                                      train_steering_vector)

DATA = Path(__file__).resolve().parents[1] / "data"  # steering/data, shared by the products
CONTROL = DATA / "general_ab.jsonl"  # 24 general-knowledge two-choice items, written for the project
NEUTRAL = DATA / "neutral.txt"  # 30 plain sentences, written for the project
UNITS = ("residual", "raw")  # what strength 1 means; see SteeringVector.residual_scaled


@dataclass
class SteerABConfig:
    """What `run_steer_ab` does: the items, the layer x strength grid, the splits and the cost checks."""

    data: str  # model-written-evaluations JSONL (question, answer_matching_behavior, answer_not_matching_behavior)
    layers: list[int] | None = None  # candidate layers; default: model.default_layers(4)
    strengths: tuple[float, ...] = (-0.5, -0.3, -0.2, -0.1, -0.05, 0.0, 0.05, 0.1, 0.2, 0.3, 0.5)  # 0 added
    metric: str = "logit-diff"  # "logit-diff": log p(matching) - log p(other); "prob": p(matching) / (p(A) + p(B))
    steer_positions: str = "response"  # "response": from the answer's "(" on (CAA); "all": the question too
    cost_bound: float = DEFAULT_COST_BOUND  # nats/token of neutral loss a strength may add to be in range
    unit: str = "residual"  # "residual": strength 1 = the layer's mean residual norm; "raw": the CAA mean difference
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)  # train / validation / test, by item
    seed: int = 0
    max_items: int | None = None  # use a seeded sample of this many items
    control_data: str | None = None  # A/B items unrelated to the behaviour (default: shipped general knowledge)
    neutral: str | None = None  # neutral text, one per line, for the loss cost (default: shipped)
    open_items: int = 3  # test questions answered open-ended (choices stripped), steered both ways
    max_new_tokens: int = 40
    chat: bool | None = None  # None: the chat template when the model has one
    batch_size: int = 8
    sae: str | None = None  # steer by one feature of this SAE (its decoder row; steering.ab.features) at its block
    feature: int | None = None  # with sae: the feature (None: chosen on the training items)

    def __post_init__(self):
        strengths = sorted({check_strength(s, bound=MAX_STRENGTH) for s in self.strengths} | {0.0})
        if len(strengths) < 2:
            raise ValueError("Need at least one non-zero strength besides 0: pass e.g. strengths=(-2, 0, 2).")
        self.strengths = tuple(strengths)
        if len(self.fractions) != 3 or min(self.fractions) <= 0:
            raise ValueError(f"fractions must be three positive numbers (train, validation, test), not {self.fractions}.")
        self.fractions = tuple(float(f) for f in self.fractions)
        if self.open_items < 0 or self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("open_items must be >= 0, max_new_tokens and batch_size >= 1.")
        if self.max_items is not None and (not isinstance(self.max_items, int) or self.max_items < 1):
            raise ValueError(f"max_items must be a positive integer (or None for every item), not {self.max_items!r}.")
        if self.unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, not {self.unit!r}.")
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, not {self.metric!r}.")
        if self.steer_positions not in STEER_POSITIONS:
            raise ValueError(f"steer_positions must be one of {STEER_POSITIONS}, not {self.steer_positions!r}.")
        if not (isinstance(self.cost_bound, (int, float)) and math.isfinite(self.cost_bound) and self.cost_bound > 0):
            raise ValueError(f"cost_bound must be a positive number of nats/token, not {self.cost_bound!r}.")
        self.cost_bound = float(self.cost_bound)
        self.data = str(self.data)
        if self.sae is not None and self.layers:
            raise ValueError("An SAE steers at its own block: drop layers (--layers) when steering by a feature.")

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return asdict(self)


@dataclass
class SteerABResult:
    """What `run_steer_ab` found: each layer's in-range strengths (chosen on validation neutral texts),
    test propensity and steerability per layer, the layer the validation items chose (None when no
    layer has a strength under the cost bound: no steerability claim), what steering costs there,
    open-ended samples, per-item propensities and the vector."""

    config: SteerABConfig
    layer: int | None  # the most steerable layer on the validation items; None: nothing in range
    propensity: dict[int, list[dict]]  # test: per layer, one row per in-range strength (mean, low, high, n, flips)
    steerability: dict[int, dict]  # test: per layer, mean slope per unit strength over its range, t-interval, mde
    validation: dict[int, dict]  # the same on the validation items: what chose the layer
    splits: dict  # sizes: train (after balancing), validation, test, and train items matching with A / B
    ranges: dict[int, dict] = field(default_factory=dict)  # per layer: strength range, bound, cost per strength
    propensity_items: dict = field(default_factory=dict)  # per split: items, and {layer: {strength: [per item]}}
    costs: list[dict] = field(default_factory=list)  # per grid strength at the chosen layer
    samples: list[dict] = field(default_factory=list)  # open-ended answers, unsteered and steered both ways
    vector: SteeringVector | None = None  # every candidate layer
    model: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def strengths(self) -> list[float]:
        """The strength grid (0 included)."""
        return list(self.config.strengths)

    @property
    def strength_range(self) -> dict:
        """The chosen layer's range record (results.json `strength_range`), with the candidate layers' own."""
        chosen = self.ranges.get(self.layer, {"low": 0.0, "high": 0.0, "cost_bound_nats": self.config.cost_bound,
                                              "chosen_on": "validation", "cost_per_strength": {},
                                              "steerable_range": False})
        return {**chosen, "layer": self.layer, "per_layer": {str(k): v for k, v in self.ranges.items()}}

    def headline(self) -> str:
        """One line with the key numbers."""
        if self.layer is None:
            if any(r.get("steerable_range") for r in self.ranges.values()):
                return "no steerability claim: no layer has a finite validation steerability; use more items"
            return (f"no steerability claim: at no candidate layer does any non-zero strength keep the neutral-text "
                    f"loss within +{self.config.cost_bound:g} nats/token (validation neutral texts)")
        s = self.steerability[self.layer]
        rows = {r["strength"]: r for r in self.propensity[self.layer]}
        lo, hi = min(rows), max(rows)
        return (f"layer {self.layer}, strengths {lo:g}..{hi:g} (neutral cost <= {self.config.cost_bound:g} nats/token), "
                f"{self.config.metric} propensity {rows[lo]['mean']:.2f} / {rows[0.0]['mean']:.2f} (0) / "
                f"{rows[hi]['mean']:.2f}; steerability {s['estimate']:+.3f} [{s['low']:+.3f}, {s['high']:+.3f}] "
                f"per unit strength, MDE {(s.get('mde_over_items') or {}).get('value', float('nan')):.3f} "
                f"(the interval's test; n={s['n']} test items)")

    def summary(self) -> str:
        """A few lines for the terminal."""
        lines = [self.headline(), f"splits: {self.splits}"]
        for layer in sorted(self.ranges):
            r, v, t = self.ranges[layer], self.validation.get(layer, {}), self.steerability.get(layer, {})
            mark = "  <- chosen on validation" if layer == self.layer else "  (exploratory)"
            if t.get("estimate") is None:
                lines.append(f"  layer {layer}: no strength within the cost bound")
                continue
            lines.append(f"  layer {layer}: range [{r['low']:g}, {r['high']:g}], validation {v['estimate']:+.3f}, "
                         f"test {t['estimate']:+.3f} [{t['low']:+.3f}, {t['high']:+.3f}]{mark}")
        for c in self.costs:
            acc = "n/a (out of range)" if c["control_accuracy"] is None else f"{c['control_accuracy']:.2f}"
            lines.append(f"  strength {c['strength']:+g}: neutral loss {c['neutral_loss_change']:+.3f} nats/token, "
                         f"control accuracy {acc}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """What results.json holds (everything but the vector's tensors)."""
        return {"config": self.config.to_dict(), "model": self.model, "layer": self.layer,
                "metric": self.config.metric, "steer_positions": self.config.steer_positions,
                "strengths": self.strengths, "strength_range": self.strength_range, "splits": self.splits,
                "propensity": {str(k): v for k, v in self.propensity.items()},
                "steerability": {str(k): v for k, v in self.steerability.items()},
                "validation_steerability": {str(k): v for k, v in self.validation.items()},
                "propensity_items": self.propensity_items,
                "costs": self.costs, "samples": self.samples, "seconds": self.seconds, "headline": self.headline(),
                "sae_feature": {k: self.vector.metadata[k] for k in ("sae_feature", "site", "scale", "cosine_to_caa",
                                "ranking") if k in self.vector.metadata} if self.config.sae and self.vector else None}

    def save(self, out: str | Path) -> Path:
        """Write `out/results.json`, `out/report.html` and the vector `out/vector/`; returns `out`."""
        out = Path(out)
        if self.vector is not None:
            self.vector.save(out / "vector")
        save_json(out / "results.json", self.to_dict())
        write_report(out / "report.html", f"A/B steering: {Path(self.config.data).name}", sections(self), self.model)
        return out

    @classmethod
    def load(cls, out: str | Path) -> "SteerABResult":
        """Read a result written by `save`."""
        out = Path(out)
        if not (out / "results.json").exists():
            raise FileNotFoundError(f"No results.json in {out}: write one with run_steer_ab(..., out=DIR).")
        d = json.loads((out / "results.json").read_text())
        ints = lambda m: {int(k): v for k, v in m.items()}  # noqa: E731
        vector = SteeringVector.load(out / "vector") if (out / "vector").exists() else None
        ranges = ints(d.get("strength_range", {}).get("per_layer", {}))
        return cls(config=SteerABConfig(**d["config"]), layer=d["layer"], propensity=ints(d["propensity"]),
                   steerability=ints(d["steerability"]), validation=ints(d["validation_steerability"]),
                   splits=d["splits"], ranges=ranges, propensity_items=d.get("propensity_items", {}),
                   costs=d["costs"], samples=d["samples"], vector=vector, model=d["model"], seconds=d["seconds"])


def _read(model, items, vector, strength, config) -> np.ndarray:
    """[n_items]: propensity with `vector` at `strength` (None / 0: unsteered), steered where config says."""
    edits = None
    if vector is not None and strength:
        edits = lambda start: vector.edits(model, strength, start=start)  # noqa: E731
    return propensity(model, items, edits, chat=config.chat, batch_size=config.batch_size, metric=config.metric,
                      positions=config.steer_positions)


def in_range(strengths, record: dict) -> list[float]:
    """The grid strengths inside a range record's [low, high] (0 included)."""
    return [s for s in strengths if record["low"] <= s <= record["high"]]


def _grid(model, vector, items, grids: dict[int, list[float]], config, bar) -> dict[int, np.ndarray]:
    """{layer: [n_items, n_strengths]} propensity over each layer's own strengths; strength 0 once for all."""
    base = _read(model, items, None, 0.0, config)
    bar.update()
    out = {}
    for layer, strengths in grids.items():
        single = vector.restricted([layer])
        cols = []
        for s in strengths:
            cols.append(base if s == 0.0 else _read(model, items, single, s, config))
            bar.update(s != 0.0)
        out[layer] = np.stack(cols, 1)
        bad = [s for s, col in zip(strengths, cols) if not np.isfinite(col).all()]
        if bad:
            raise ValueError(f"Propensity at layer {layer}, strength {bad[0]:g} is NaN although its neutral cost is "
                             f"within the bound: lower --cost-bound or sweep smaller --strengths.")
    return out


def _rows(p: np.ndarray, strengths, metric: str) -> list[dict]:
    flipped = flips(p, strengths, indifferent(metric))
    rows = []
    for j, s in enumerate(strengths):
        ci = mean_ci(p[:, j])
        f = flipped[j]
        rows.append({"strength": s, "mean": ci.estimate, "low": ci.low, "high": ci.high, "n": ci.n,
                     "flip_share": f["flip_share"], "flip_low": f["low"], "flip_high": f["high"]})
    return rows


def slope_record(p: np.ndarray, strengths, alpha: float = 0.05) -> dict:
    """Steerability over `strengths` (columns of p [n_items, n_strengths]): the mean per-item least-squares
    slope with a t-interval over items' slopes, and the MDE (`metalens.power.mde_slope`) of a slope test at
    the residual SD of the pooled fit with one intercept per item, over the strengths repeated per item."""
    p = np.asarray(p, dtype=float)
    out = {**steerability(p, strengths), "interval": "t over items' slopes", "strengths": list(strengths)}
    x = np.asarray(strengths, dtype=float)
    n, k = p.shape
    if n * k - n - 1 < 1:
        out["mde"] = None
        return out
    b = float(slopes(p, x).mean())
    resid = (p - p.mean(1, keepdims=True)) - b * (x - x.mean())[None, :]  # [n_items, n_strengths]
    sd = float(np.sqrt((resid ** 2).sum() / (n * k - n - 1)))
    out["mde"] = _power({"design": "least-squares slope, one intercept per item, in-range strengths x items "
                         "(mde_slope)", "n": n, "n_points": n * k, "sd_resid": sd, "alpha": alpha, "power": 0.8},
                        lambda: mde_slope(sd, np.tile(x, n), alpha))
    sd_slopes = float(np.std(slopes(p, x), ddof=1)) if n > 1 else float("nan")
    # The same test as the interval: a one-sample t on the items' slopes.
    out["mde_over_items"] = _power({"design": "one-sample t over items' slopes (mde_paired_mean)", "n": n,
                                    "sd_slopes": sd_slopes, "alpha": alpha, "power": 0.8},
                                   lambda: mde_paired_mean(sd_slopes, n, alpha))
    return out


def _power(record: dict, compute) -> dict | None:
    """`record` with its MDE as "value", or None where too few items give the test any power to solve for."""
    try:
        value = compute()
    except ValueError:
        return None
    return {"value": value, **record} if math.isfinite(value) else None


def choose_layer(validation: dict[int, dict]) -> int | None:
    """The layer whose validation steerability (mean slope) is highest; ties go to the earlier layer;
    None when no layer has one (no strength within the cost bound)."""
    ok = {k: v["estimate"] for k, v in validation.items() if v.get("estimate") is not None and math.isfinite(v["estimate"])}
    if not ok:
        return None
    return max(sorted(ok), key=lambda k: ok[k])


def _costs(model, vector, layer, strengths, record, texts, config, bar) -> list[dict]:
    """Per grid strength at `layer`: loss change on the held-out neutral texts; control accuracy in range only."""
    control = read_ab(config.control_data or CONTROL)
    single = vector.restricted([layer])
    base = neutral_loss(model, texts, None, config.batch_size)
    rows = []
    for s in strengths:
        loss = base if s == 0.0 else neutral_loss(model, texts, single.edits(model, s), config.batch_size)
        change = paired_test(loss, base)
        row = {"strength": s, "in_range": record["low"] <= s <= record["high"], "neutral_loss": float(np.nanmean(loss)),
               "neutral_loss_change": change.mean_diff, "change_low": change.low, "change_high": change.high,
               "n_neutral": len(texts), "n_control": len(control), "control_accuracy": None, "control_low": None,
               "control_high": None}
        if row["in_range"]:  # past the range the model is broken; its accuracy there says nothing new
            d = _read(model, control, single, s, config)  # matching = the correct letter
            acc = wilson_ci(int((d > indifferent(config.metric)).sum()), len(d))
            row.update(control_accuracy=acc.estimate, control_low=acc.low, control_high=acc.high)
        rows.append(row)
        bar.update()
    return rows


def _open_ended(model, vector, layer, items, record, config) -> list[dict]:
    if not config.open_items or not items:
        return []
    questions = [strip_choices(i.question) for i in items[:config.open_items]]
    single = vector.restricted([layer])
    kw = dict(max_new_tokens=config.max_new_tokens, chat=config.chat, batch_size=config.batch_size,
              prompt=config.steer_positions == "all")  # "response": only the answer's tokens are steered
    out = {"unsteered": generate(model, questions, None, **kw)}
    for s in (record["high"], record["low"]):
        if s != 0.0:
            out[f"strength {s:+g}"] = generate(model, questions, single, strength=s, **kw)
    return [{"question": q, **{k: v[i] for k, v in out.items()}} for i, q in enumerate(questions)]


def _item_ids(items, pool) -> list[dict]:
    index = {id(it): k for k, it in enumerate(pool)}
    return [{"index": index.get(id(it)), "matching": it.matching, "question": it.question[:80]} for it in items]


def _per_item(items, pool, grid, grids) -> dict:
    return {"items": _item_ids(items, pool),
            "values": {str(layer): {f"{s:g}": [float(v) for v in p[:, j]] for j, s in enumerate(grids[layer])}
                       for layer, p in grid.items()}}


def run_steer_ab(model, config: SteerABConfig, *, out: str | Path | None = None, progress: bool = True) -> SteerABResult:
    """Train a CAA vector on the train items; per candidate layer, keep the strengths whose neutral-text
    loss rises at most `config.cost_bound` nats/token (judged on the validation half of the neutral
    texts); choose the layer on the validation items and report propensity, steerability (slope over
    the in-range strengths, with an MDE) and flips on the test items, with the costs of steering
    (held-out neutral-text loss, accuracy on unrelated A/B items) and open-ended samples there.

    Items are split by question (seeded); the training items are balanced so as many match with (A)
    as with (B). With `out`, the result is saved there (results.json, report.html, vector/).
    """
    started = time.time()
    pool = read_ab(config.data)
    items = pool
    if config.max_items is not None and config.max_items < len(items):
        pick = np.random.default_rng(config.seed).permutation(len(items))[:config.max_items]
        items = [items[k] for k in sorted(pick)]
    train, val, test = split_items(items, config.fractions, config.seed)
    if len(test) < 2:  # one item's mean has no interval: the report would print [nan, nan]
        raise ValueError(f"Only {len(test)} test item(s) of {len(items)} (split {config.fractions}): an interval needs "
                         "two; give more items (--data, --max-items).")
    train = balance(train, config.seed)
    if len(train) < 2:
        raise ValueError(f"Only {len(train)} training item(s) after balancing (A) and (B): use more items.")
    neutral_val, neutral_test = split_neutral(metalens.read_texts(config.neutral or NEUTRAL))
    positive, negative = caa_pairs(model, train, config.chat)
    if config.sae is not None:  # a feature's decoder row at the SAE's block, in place of the CAA vector
        vector = feature_vector(model, config.sae, config.feature, positive, negative, config.batch_size, config.seed)
    else:
        vector = train_steering_vector(model, positive, negative, positions="last", batch_size=config.batch_size,
                                       layers=model.resolve_layers(config.layers or model.default_layers(N_CANDIDATE_LAYERS)),
                                       seed=config.seed)
    layers = vector.layers
    if config.unit == "residual":
        vector = vector.residual_scaled()
    strengths = list(config.strengths)
    bar = tqdm(desc="steer-ab", unit="setting", disable=not progress)
    costs_val = loss_changes(model, vector, layers, strengths, neutral_val, config.batch_size, bar)
    ranges = {k: range_record(costs_val[k], config.cost_bound, len(neutral_val)) for k in layers}
    grids = {k: in_range(strengths, ranges[k]) for k in layers if ranges[k]["steerable_range"]}
    p_val = _grid(model, vector, val, grids, config, bar)
    validation = {k: slope_record(p, grids[k]) for k, p in p_val.items()}
    layer = choose_layer(validation)  # chosen before any test item is scored
    p_test = _grid(model, vector, test, grids, config, bar) if grids else {}
    n_other = max(1, len(p_test) - (layer in p_test))
    steer = {}
    for k, p in p_test.items():  # the chosen layer is one test; the others are exploratory, Holm over them
        alpha = 0.05 if k == layer else family_alpha(0.05, n_other)
        steer[k] = {**slope_record(p, grids[k], alpha), "exploratory": k != layer,
                    "n_comparisons": 1 if k == layer else n_other}
    for k in layers:
        if k not in grids:
            steer[k] = {"estimate": None, "low": None, "high": None, "n": len(test), "mde": None,
                        "exploratory": True, "reason": f"no non-zero strength keeps the validation neutral loss "
                        f"within +{config.cost_bound:g} nats/token"}
    costs, samples = [], []
    if layer is not None:
        costs = _costs(model, vector, layer, strengths, ranges[layer], neutral_test, config, bar)
        samples = _open_ended(model, vector, layer, test, ranges[layer], config)
    bar.close()
    n_a = sum(i.matching == "A" for i in train)
    result = SteerABResult(
        config=config, layer=layer, propensity={k: _rows(p, grids[k], config.metric) for k, p in p_test.items()},
        steerability=dict(sorted(steer.items())), validation=validation, ranges=ranges,
        propensity_items={"validation": _per_item(val, pool, p_val, grids), "test": _per_item(test, pool, p_test, grids),
                          "metric": config.metric, "index": "position among the two-choice items read from --data"},
        splits={"train": len(train), "validation": len(val), "test": len(test), "train_matching_A": n_a,
                "train_matching_B": len(train) - n_a},
        costs=costs, samples=samples, vector=vector, model=model.metadata(), seconds=time.time() - started)
    if out is not None:
        result.save(out)
    return result

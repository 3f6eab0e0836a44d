"""`run_steer_ab`: A/B behaviour items -> CAA vector -> propensity per layer x strength -> `SteerABResult`.

No judge: the behaviour is read from the model's own probabilities of the two answer letters.
The layer is chosen on the validation items; every reported number is on the test items.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import metalens
from metalens.report import save_json, write_report
from metalens.sites import FINAL_NORM
from metalens.stats import mean_ci, paired_test, wilson_ci
from metalens.steering.ab.items import (balance, caa_pairs, flips, propensity, read_ab, split_items, steerability,
                                  strip_choices)
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
    strengths: tuple[float, ...] = (-0.5, -0.2, -0.1, 0.0, 0.1, 0.2, 0.5)  # 0 is added when missing
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
        self.data = str(self.data)

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return asdict(self)


@dataclass
class SteerABResult:
    """What `run_steer_ab` found: test propensity and steerability per layer, the layer the validation
    items chose, what steering costs there, open-ended samples, and the vector."""

    config: SteerABConfig
    layer: int  # the most steerable layer on the validation items
    propensity: dict[int, list[dict]]  # test: per layer, one row per strength (mean, low, high, n, flip_share ...)
    steerability: dict[int, dict]  # test: per layer, mean slope per unit strength with a t-interval over items
    validation: dict[int, dict]  # the same on the validation items: what chose the layer
    splits: dict  # sizes: train (after balancing), validation, test, and train items matching with A / B
    costs: list[dict] = field(default_factory=list)  # per strength at the chosen layer
    samples: list[dict] = field(default_factory=list)  # open-ended answers, unsteered and steered both ways
    vector: SteeringVector | None = None  # every candidate layer
    model: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def strengths(self) -> list[float]:
        """The strength grid (0 included)."""
        return list(self.config.strengths)

    def headline(self) -> str:
        """One line with the key numbers."""
        s = self.steerability[self.layer]
        rows = {r["strength"]: r for r in self.propensity[self.layer]}
        lo, hi = min(rows), max(rows)
        return (f"layer {self.layer}: propensity {rows[lo]['mean']:.2f} (strength {lo:g}) / {rows[0.0]['mean']:.2f} "
                f"(0) / {rows[hi]['mean']:.2f} ({hi:g}); steerability {s['estimate']:+.3f} "
                f"[{s['low']:+.3f}, {s['high']:+.3f}] per unit strength (n={s['n']} test items)")

    def summary(self) -> str:
        """A few lines for the terminal."""
        lines = [self.headline(), f"splits: {self.splits}"]
        for layer in sorted(self.steerability):
            v, t = self.validation[layer], self.steerability[layer]
            mark = "  <- chosen on validation" if layer == self.layer else ""
            lines.append(f"  layer {layer}: validation {v['estimate']:+.3f}, test {t['estimate']:+.3f} "
                         f"[{t['low']:+.3f}, {t['high']:+.3f}]{mark}")
        for c in self.costs:
            lines.append(f"  strength {c['strength']:+g}: neutral loss {c['neutral_loss_change']:+.3f} nats/token, "
                         f"control accuracy {c['control_accuracy']:.2f}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """What results.json holds (everything but the vector's tensors)."""
        return {"config": self.config.to_dict(), "model": self.model, "layer": self.layer,
                "strengths": self.strengths, "splits": self.splits,
                "propensity": {str(k): v for k, v in self.propensity.items()},
                "steerability": {str(k): v for k, v in self.steerability.items()},
                "validation_steerability": {str(k): v for k, v in self.validation.items()},
                "costs": self.costs, "samples": self.samples, "seconds": self.seconds, "headline": self.headline()}

    def save(self, out: str | Path) -> Path:
        """Write `out/results.json`, `out/report.html` and the vector `out/vector/`; returns `out`."""
        out = Path(out)
        if self.vector is not None:
            self.vector.save(out / "vector")
        save_json(out / "results.json", self.to_dict())
        write_report(out / "report.html", f"A/B steering: {Path(self.config.data).name}", _sections(self), self.model)
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
        return cls(config=SteerABConfig(**d["config"]), layer=d["layer"], propensity=ints(d["propensity"]),
                   steerability=ints(d["steerability"]), validation=ints(d["validation_steerability"]),
                   splits=d["splits"], costs=d["costs"], samples=d["samples"], vector=vector, model=d["model"],
                   seconds=d["seconds"])


@torch.inference_mode()
def neutral_loss(model, texts: list[str], edits=None, batch_size: int = 8, chunk: int = 256) -> np.ndarray:
    """[n_texts]: mean next-token loss (nats) of each text with `edits` active (BOS not predicted)."""
    out = np.full(len(texts), np.nan)
    for start in range(0, len(texts), batch_size):
        batch = model.tokenize(texts[start:start + batch_size])
        ids, mask = batch["input_ids"], batch["attention_mask"]  # [batch, pos], right-padded
        hidden = metalens.run_with_cache(model, ids, mask, sites=[FINAL_NORM], edits=edits)[FINAL_NORM]
        rows, cols = torch.nonzero(mask[:, 1:], as_tuple=True)  # each target position, after the first token
        nll = torch.empty(len(rows))
        for i in range(0, len(rows), chunk):  # logits for a slice of positions at a time: the vocabulary is wide
            r, c = rows[i:i + chunk], cols[i:i + chunk]
            logp = model.final_logits(hidden[r, c]).float().log_softmax(-1)  # [chunk, vocab]
            nll[i:i + chunk] = -logp[torch.arange(len(r)), ids[r, c + 1]].cpu()
        for row in range(ids.shape[0]):
            keep = rows.cpu() == row
            out[start + row] = nll[keep].mean().item() if keep.any() else np.nan
    return out


def _grid(model, vector: SteeringVector, items, layers, strengths, config, bar) -> dict[int, np.ndarray]:
    """{layer: [n_items, n_strengths]} propensity; strength 0 (no edit) computed once for all layers."""
    kw = dict(chat=config.chat, batch_size=config.batch_size)
    base = propensity(model, items, None, **kw)
    bar.update()
    grid = {}
    for layer in layers:
        single = vector.restricted([layer])
        cols = []
        for s in strengths:
            if s == 0.0:
                cols.append(base)
                continue
            cols.append(propensity(model, items, single.edits(model, s), **kw))
            bar.update()
        grid[layer] = np.stack(cols, 1)
        bad = [s for s, col in zip(strengths, cols) if not np.isfinite(col).all()]
        if bad:
            raise ValueError(f"Propensity at layer {layer}, strength {bad[0]:g} is NaN: steering that hard breaks the "
                             "model's numbers; sweep smaller --strengths.")
    return grid


def _rows(p: np.ndarray, strengths) -> list[dict]:
    flipped = flips(p, strengths)
    rows = []
    for j, s in enumerate(strengths):
        ci = mean_ci(p[:, j])
        f = flipped[j]
        rows.append({"strength": s, "mean": ci.estimate, "low": ci.low, "high": ci.high, "n": ci.n,
                     "flip_share": f["flip_share"], "flip_low": f["low"], "flip_high": f["high"]})
    return rows


def choose_layer(validation: dict[int, dict]) -> int:
    """The layer whose validation steerability (mean slope) is highest; ties go to the earlier layer."""
    ok = {k: v["estimate"] for k, v in validation.items() if v["estimate"] is not None and math.isfinite(v["estimate"])}
    if not ok:
        raise ValueError("No layer has a finite validation steerability: use more validation items.")
    return max(sorted(ok), key=lambda k: ok[k])


def _costs(model, vector, layer, strengths, config, bar) -> list[dict]:
    neutral = metalens.read_texts(config.neutral or NEUTRAL)
    control = read_ab(config.control_data or CONTROL)
    single = vector.restricted([layer])
    losses, rows = {}, []
    for s in strengths:
        edits = single.edits(model, s) if s else None
        losses[s] = neutral_loss(model, neutral, edits, config.batch_size)
        if not np.isfinite(losses[s]).any():
            raise ValueError(f"The neutral-text loss at layer {layer}, strength {s:g} is NaN: steering that hard breaks "
                             "the model's numbers; sweep smaller --strengths.")
        p = propensity(model, control, edits, chat=config.chat, batch_size=config.batch_size)  # p(correct letter)
        acc = wilson_ci(int((p > 0.5).sum()), len(p))
        rows.append({"strength": s, "neutral_loss": float(np.nanmean(losses[s])), "control_accuracy": acc.estimate,
                     "control_low": acc.low, "control_high": acc.high, "control_p_correct": float(p.mean()),
                     "n_neutral": len(neutral), "n_control": len(control)})
        bar.update()
    for row in rows:  # paired over the same texts against strength 0 (always in the grid)
        change = paired_test(losses[row["strength"]], losses[0.0])
        row.update(neutral_loss_change=change.mean_diff, change_low=change.low, change_high=change.high)
    return rows


def _open_ended(model, vector, layer, items, config) -> list[dict]:
    if not config.open_items or not items:
        return []
    questions = [strip_choices(i.question) for i in items[:config.open_items]]
    single = vector.restricted([layer])
    neg, pos = min(config.strengths), max(config.strengths)
    kw = dict(max_new_tokens=config.max_new_tokens, chat=config.chat, batch_size=config.batch_size)
    out = {"unsteered": generate(model, questions, None, **kw)}
    for s in (pos, neg):
        if s != 0.0:
            out[f"strength {s:+g}"] = generate(model, questions, single, strength=s, **kw)
    return [{"question": q, **{k: v[i] for k, v in out.items()}} for i, q in enumerate(questions)]


def run_steer_ab(model, config: SteerABConfig, *, out: str | Path | None = None, progress: bool = True) -> SteerABResult:
    """Train a CAA vector on the train items, sweep layer x strength, choose the layer on the validation
    items and report propensity, steerability and flips on the test items, with the costs of steering
    (neutral-text loss, accuracy on unrelated A/B items) and open-ended samples at the chosen layer.

    Items are split by question (seeded); the training items are balanced so as many match with (A)
    as with (B). With `out`, the result is saved there (results.json, report.html, vector/).
    """
    started = time.time()
    items = read_ab(config.data)
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
    layers = model.resolve_layers(config.layers or model.default_layers(N_CANDIDATE_LAYERS))
    positive, negative = caa_pairs(model, train, config.chat)
    vector = train_steering_vector(model, positive, negative, layers=layers, positions="last",
                                   batch_size=config.batch_size, seed=config.seed)
    if config.unit == "residual":
        vector = vector.residual_scaled()
    strengths = list(config.strengths)
    n_steps = 2 * (1 + len(layers) * (len(strengths) - 1)) + len(strengths)
    bar = tqdm(total=n_steps, desc="steer-ab", unit="setting", disable=not progress)
    p_val = _grid(model, vector, val, layers, strengths, config, bar)
    validation = {k: steerability(p, strengths) for k, p in p_val.items()}
    layer = choose_layer(validation)  # chosen before any test item is scored
    p_test = _grid(model, vector, test, layers, strengths, config, bar)
    costs = _costs(model, vector, layer, strengths, config, bar)
    bar.close()
    n_a = sum(i.matching == "A" for i in train)
    result = SteerABResult(
        config=config, layer=layer, propensity={k: _rows(p, strengths) for k, p in p_test.items()},
        steerability={k: steerability(p, strengths) for k, p in p_test.items()}, validation=validation,
        splits={"train": len(train), "validation": len(val), "test": len(test), "train_matching_A": n_a,
                "train_matching_B": len(train) - n_a},
        costs=costs, samples=_open_ended(model, vector, layer, test, config), vector=vector,
        model=model.metadata(), seconds=time.time() - started)
    if out is not None:
        result.save(out)
    return result


def propensity_figure(result: SteerABResult):
    """Plotly figure: test propensity (95 % CI) and flip share vs strength, one line per layer."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("Propensity for the behaviour (test, 95% CI)",
                                                        "Share of items whose answer flips vs strength 0"))
    for layer, rows in sorted(result.propensity.items()):
        name = f"layer {layer}" + (" (chosen)" if layer == result.layer else "")
        x = [r["strength"] for r in rows]
        fig.add_trace(go.Scatter(x=x, y=[r["mean"] for r in rows], mode="lines+markers", name=name,
                                 legendgroup=str(layer), error_y=dict(
                                     type="data", array=[r["high"] - r["mean"] for r in rows],
                                     arrayminus=[r["mean"] - r["low"] for r in rows])), 1, 1)
        fig.add_trace(go.Scatter(x=x, y=[r["flip_share"] for r in rows], mode="lines+markers", name=name,
                                 legendgroup=str(layer), showlegend=False), 1, 2)
    fig.update_xaxes(title_text="strength")
    fig.update_yaxes(range=[0, 1])
    fig.update_layout(height=420)
    return fig


def _sections(result: SteerABResult) -> list:
    by_strength = {r["strength"]: r for r in result.propensity[result.layer]}
    layers = [{"layer": k, "validation steerability": result.validation[k]["estimate"],
               "test steerability": v["estimate"], "95% CI": f"[{v['low']:+.3f}, {v['high']:+.3f}]", "n": v["n"],
               "chosen": "yes" if k == result.layer else ""} for k, v in sorted(result.steerability.items())]
    costs = [{"strength": c["strength"], "propensity (test)": by_strength[c["strength"]]["mean"],
              "flip share": by_strength[c["strength"]]["flip_share"],
              "neutral loss (nats/token)": c["neutral_loss"], "loss change": c["neutral_loss_change"],
              "change 95% CI": f"[{c['change_low']:+.3f}, {c['change_high']:+.3f}]",
              "control accuracy": c["control_accuracy"],
              "control 95% CI": f"[{c['control_low']:.2f}, {c['control_high']:.2f}]"} for c in result.costs]
    s = result.splits
    return [
        ("Headline", result.headline()),
        ("Propensity and flips per layer (test items)", propensity_figure(result)),
        ("Steerability per layer (mean per-item slope of propensity per unit strength)", layers),
        (f"Behaviour shift next to what it costs (layer {result.layer})", costs),
        ("Open-ended answers (choices stripped; no judge)", result.samples),
        ("How to read this", "Propensity is the probability the model gives the answer letter that shows the "
         "behaviour, normalised over the two letters, averaged over test items (t-interval). Steerability is the "
         "least-squares slope of each item's propensity over the strength grid, averaged over items; "
         + ("strength 1 adds a vector as long as the layer's mean residual-stream norm at the answer letter. "
            if result.config.unit == "residual" else "strength 1 adds the raw CAA mean difference. ")
         + "A flip is an "
         "item whose preferred letter differs from the unsteered one (Wilson interval). The vector is the CAA mean "
         f"difference at the answer letter over {s['train']} training items ({s['train_matching_A']} matching with "
         f"(A), {s['train_matching_B']} with (B)); the layer was chosen on {s['validation']} validation items and "
         f"every number here is on {s['test']} test items. Costs: mean next-token loss on neutral text and accuracy "
         "on unrelated two-choice questions, with the vector applied at that strength; loss change is paired over "
         "the same texts against strength 0."),
    ]

"""`run_atlas`: the metacognitive atlas, behavioural and internal signals of correctness side by side.

For each model: the battery (`metalens.analyses.battery`: answer, confidence, KEEP/WITHDRAW,
BET/PASS, all read from option-token probabilities), a correctness probe on the residual stream
(grouped cross-validation, layer chosen inside each fold), a trained reward head when one is
given, and the probe axis's reportability (`metalens.probes.reporting.run_reporting`). Every
AUROC, delta and gap comes with a bootstrap interval over item groups (`metalens.analyses.metacog`).
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

import metalens
from metalens.analyses import metacog
from metalens.analyses.atlas_config import AtlasConfig, AtlasResult, atlas_command, atlas_items, excluded_overlap
from metalens.analyses.atlas_family import add_family, summary_lines
from metalens.analyses.overlap import training_overlap
from metalens.analyses.battery import FOLLOW_UPS, Item, Readout, read_battery
from metalens.report import save_json
from metalens.stats import auroc, bootstrap_ci, wilson_ci

PROFILE_VERSION = 2  # 2: per-item rows carry item_id and a `scores` dict keyed by signal name
REPORTED = ("verbal confidence", "keep/withdraw", "bet/pass")  # what the model says, for the gap
__all__ = ["AtlasConfig", "AtlasResult", "atlas_command", "atlas_demo", "atlas_items", "headline", "item_id",
           "model_profile", "probe_signal", "run_atlas"]


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name.strip("/")).strip("_")[-80:] or "model"


def _fingerprint(name: str, config: AtlasConfig, items) -> str:
    """Key of a saved profile: the model, the config and the items themselves (a change in how items
    are built must not reuse profiles measured on other items)."""
    return hashlib.sha256(json.dumps([PROFILE_VERSION, name, asdict(config), [asdict(it) for it in items]], sort_keys=True,
                                     default=str).encode()).hexdigest()[:16]


# --- internal signals ------------------------------------------------------------------------


def _cv_predict(X: np.ndarray, y: np.ndarray, folds, C: float, seed: int) -> np.ndarray:
    """Held-out p(right) for every row: each row scored by the probe of the fold that left it out."""
    from metalens.probes import train_probe

    out = np.full(len(y), np.nan)
    for train, test in folds:
        probe = train_probe(X[train], y[train], test_size=0, cv=0, C=C, seed=seed)
        out[test] = probe.predict_proba(X[test]).numpy()
    return out


def probe_signal(resid, correct, groups, layers: list[int], cv: int = 5, C: float = 0.1, seed: int = 0) -> dict:
    """A correctness probe per layer, scored on held-out predictions from grouped folds.

    resid: [n_items, n_layers, d_model]. Returns `per_layer` held-out predictions {layer: [n]} and
    `predictions` [n] from nested cross-validation: in each outer fold the layer is chosen by an
    inner grouped CV on the training part only, so the reported AUROC carries no selection bias;
    `fold_layers` are the layers chosen.
    """
    from metalens.probes import group_folds  # group-aware stratified splits, as train_probe uses

    X = np.asarray(resid, dtype=np.float64)
    y, g = np.asarray(correct).astype(int), np.asarray(groups)
    folds = group_folds(y, g, cv, seed)
    per_layer = {L: _cv_predict(X[:, L], y, folds, C, seed) for L in layers}
    nested, chosen = np.full(len(y), np.nan), []
    for train, test in folds:
        inner = group_folds(y[train], g[train], max(2, cv - 1), seed)
        scores = {L: auroc(y[train], _cv_predict(X[train][:, L], y[train], inner, C, seed)) for L in layers}
        best = max(layers, key=lambda L: (np.nan_to_num(scores[L], nan=-1.0), -L))
        chosen.append(best)
        nested[test] = _cv_predict(X[:, best], y, [(train, test)], C, seed)[test]
    return {"per_layer": per_layer, "predictions": nested, "fold_layers": chosen}


def reward_head_scores(model, head_dir, answer_hidden) -> tuple[np.ndarray, dict]:
    """P(correct) of a trained reserved-logit reward head at the position predicting the answer, and its metadata."""
    from metalens.introspect import ReservedHead

    head = ReservedHead.load(head_dir)
    if head.weight.shape[1] != answer_hidden.shape[1]:
        raise ValueError(f"The head in {head_dir} has width {head.weight.shape[1]}; {model.name} has d_model "
                         f"{answer_hidden.shape[1]}: train a head for this model (`metalens introspect train`).")
    p = head.spec.p_correct(head.probs_from_hidden(model, answer_hidden.float())).numpy()
    return p, {"dir": str(head_dir), "trained_on": head.metadata.get("model"), "start": head.start}


def probe_reportability(model, X: np.ndarray, correct, groups, texts: list[str], config: AtlasConfig,
                        progress: bool) -> dict:
    """Can the model report its own correctness-probe axis? The probe (fit on all items at one layer)
    labels each item by a median split of its decision value; `run_reporting` asks the model for
    those labels from N in-context examples, against shuffled labels."""
    from metalens.probes import train_probe
    from metalens.probes import measure_reporting

    probe = train_probe(X, np.asarray(correct).astype(int), test_size=0, cv=0, C=config.probe_c, seed=config.seed)
    decision = probe.decision(X).numpy()
    labels = (decision > np.median(decision)).astype(int)[:, None]
    result = measure_reporting(model, texts, labels, ["correctness probe"], n_values=config.reporting_n,
                               draws=config.reporting_draws, seed=config.seed, groups=groups, progress=progress)
    row = result.tests(n_min=max(1, max(result.n_values) // 2))[0]
    keep = ("accuracy", "acc_low", "acc_high", "shuffled_accuracy", "shuffled_low", "shuffled_high", "diff",
            "diff_low", "diff_high", "p", "n_draws", "n_min", "test")
    return {**{k: row[k] for k in keep}, "n_values": result.n_values, "curve": result.curves()["correctness probe"],
            "labels": "probe decision above its median", "example_prompt": result.example_prompt[:2000]}


# --- one model's profile ---------------------------------------------------------------------


def _signal(name: str, kind: str, score, y, groups, cfg: AtlasConfig, reported: bool, **extra) -> dict:
    """A signal's entry: AUROC, and for probability-like scores ECE and Brier, each with its bootstrap interval."""
    ci = metacog.auroc_ci(y, score, groups, cfg.n_boot, cfg.seed)
    entry = {"name": name, "kind": kind, "reported": reported, "auroc": ci.estimate, "auroc_low": ci.low,
             "auroc_high": ci.high, "n": ci.n, "interval": ci.method}
    if np.all((score >= 0) & (score <= 1)):
        metrics = {"ece": lambda r: metacog.ece(score[r], y[r], cfg.n_bins), "brier": lambda r: metacog.brier(score[r], y[r])}
        for key, fn in metrics.items():
            ci = bootstrap_ci(fn, groups, cfg.n_boot, cfg.seed)
            entry.update({key: ci.estimate, f"{key}_low": ci.low, f"{key}_high": ci.high, f"{key}_interval": ci.method})
        entry["calibration"] = metacog.reliability(score, y, cfg.n_bins)
    return {**entry, **extra}


def _rate(decisions) -> dict:
    ci = wilson_ci(int(np.sum(decisions)), len(decisions))
    return {"estimate": ci.estimate, "low": ci.low, "high": ci.high, "n": ci.n, "interval": ci.method}


def _delta(fn, decisions, y, groups, cfg, soft, definition) -> dict:
    hard = metacog.delta_ci(fn, decisions, y, groups, cfg.n_boot, cfg.seed)
    soft_ci = metacog.delta_ci(fn, soft, y, groups, cfg.n_boot, cfg.seed)
    return {"estimate": hard.estimate, "low": hard.low, "high": hard.high, "n": hard.n, "interval": hard.method,
            "definition": definition, "soft": {"estimate": soft_ci.estimate, "low": soft_ci.low, "high": soft_ci.high,
                                                "interval": soft_ci.method}}


def _accuracy(items: list[Item], y: np.ndarray) -> dict:
    overall = wilson_ci(int(y.sum()), len(y))
    rows = []
    for source, level in sorted({(it.source, it.level) for it in items}):
        mask = np.array([(it.source, it.level) == (source, level) for it in items])
        ci = wilson_ci(int(y[mask].sum()), int(mask.sum()))
        rows.append({"source": source, "level": level, "n": ci.n, "accuracy": ci.estimate, "low": ci.low, "high": ci.high})
    return {"accuracy": overall.estimate, "low": overall.low, "high": overall.high, "n": overall.n,
            "interval": overall.method, "by_difficulty": rows}


def model_profile(model, items: list[Item], config: AtlasConfig, *, head_dir=None, out=None,
                  progress: bool = True) -> dict:
    """Read the battery on `model` and score every signal of correctness (with `head_dir`, also a trained
    reward head's); with `out`, also save the probes as a `LayerSweep` (probes' own report) under `out/probe_sweep`."""
    cfg = config
    layers = model.resolve_layers(list(cfg.layers) if cfg.layers is not None else "all")  # before minutes of reading
    if head_dir:
        check_head(model, head_dir)
    read = read_battery(model, items, n_shots=cfg.n_shots, probe_at=cfg.probe_at, batch_size=cfg.batch_size,
                        progress=progress)
    y, groups = read.correct, np.array([it.group for it in items])
    withdraw = np.array([int(np.argmax(p)) == 1 for p in read.probs["keep"]], float)  # WITHDRAW beats KEEP
    bet = np.array([int(np.argmax(p)) == 0 for p in read.probs["bet"]], float)
    signals = [
        _signal("answer probability", "behavioural", read.score("answer"), y, groups, cfg, False,
                option_mass=float(read.mass["answer"].mean())),
        _signal("verbal confidence", "behavioural", read.score("confidence"), y, groups, cfg, True,
                option_mass=float(read.mass["confidence"].mean())),
        _signal("keep/withdraw", "behavioural", read.score("keep"), y, groups, cfg, True,
                option_mass=float(read.mass["keep"].mean()), withdraw_rate=_rate(withdraw),
                withdraw_delta=_delta(metacog.withdraw_delta, withdraw, y, groups, cfg, 1 - read.score("keep"),
                                      "withdrawal rate on wrong answers - on right answers")),
        _signal("bet/pass", "behavioural", read.score("bet"), y, groups, cfg, True,
                option_mass=float(read.mass["bet"].mean()), bet_rate=_rate(bet),
                bet_delta=_delta(metacog.bet_delta, bet, y, groups, cfg, read.score("bet"),
                                 "betting rate on right answers - on wrong answers")),
    ]
    scores = dict(zip((s["name"] for s in signals), (read.score(k) for k in ("answer", *FOLLOW_UPS))))
    rows = [{"item_id": item_id(i, it), **it.to_dict(), "choice": int(c), "correct": bool(ok),
             "scores": {k: float(v[i]) for k, v in scores.items()}}
            for i, (it, c, ok) in enumerate(zip(items, read.choice, y))]
    profile = {"model": model.name, "metadata": model.metadata(), "n_items": len(items),
               "accuracy": _accuracy(items, y), "examples": read.examples, "links": {}}
    probe = None
    try:
        probe = probe_signal(read.resid.numpy(), y, groups, layers, cfg.cv, cfg.probe_c, cfg.seed)
    except ValueError as err:  # too few right (or wrong) answers for grouped folds
        profile["probe"] = {"skipped": str(err)}
    if probe is not None:
        signals.append(_signal("correctness probe", "internal", probe["predictions"], y, groups, cfg, False,
                               site=f"resid_post at the last token of the {cfg.probe_at} prompt",
                               fold_layers=probe["fold_layers"]))
        per_layer = [{"layer": L, **{k: v for k, v in zip(("auroc", "low", "high"), _ci3(y, p, groups, cfg))}}
                     for L, p in probe["per_layer"].items()]
        best = max(per_layer, key=lambda r: -1 if r["auroc"] is None or np.isnan(r["auroc"]) else r["auroc"])["layer"]
        profile["probe"] = {"per_layer": per_layer, "fold_layers": probe["fold_layers"], "best_layer": best,
                            "selection": "nested grouped CV: the layer is chosen inside each outer fold"}
        for i, p in enumerate(probe["predictions"]):
            rows[i]["scores"]["correctness probe"] = float(p)
        reported = {s["name"]: s_score for s, s_score in zip(signals[1:4], (read.score(k) for k in FOLLOW_UPS))}
        for key, versus in (("gap", reported), ("gap_vs_answer_probability", {"answer probability": read.score("answer")})):
            ci = metacog.gap_ci(y, probe["predictions"], versus, groups, cfg.n_boot, cfg.seed)
            best_name = max(versus, key=lambda n: np.nan_to_num(auroc(y, versus[n]), nan=-1))
            profile[key] = {"estimate": ci.estimate, "low": ci.low, "high": ci.high, "n": ci.n, "interval": ci.method,
                            "internal": "correctness probe", "versus": list(versus), "best_on_all_items": best_name,
                            "definition": "probe AUROC - best AUROC among the behavioural signals (re-picked per resample)"}
        if out is not None:
            _save_sweep(model, read, y, groups, layers, probe, cfg, Path(out) / "probe_sweep")
            profile["links"]["probe sweep"] = "probe_sweep/report.html"
        if cfg.reporting:
            texts = [f"{it.question} {it.choices[c]}" for it, c in zip(items, read.choice)]
            try:
                profile["reportability"] = probe_reportability(model, read.resid[:, best].numpy(), y, groups, texts,
                                                               cfg, progress)
                profile["reportability"]["layer"] = best
            except ValueError as err:
                profile["reportability"] = {"skipped": str(err)}
    else:
        profile["reportability"] = {"skipped": "no probe"}
    if head_dir:
        p, meta = reward_head_scores(model, head_dir, read.answer_hidden)
        signals.append(_signal("reward head", "internal", p, y, groups, cfg, False, head=meta))
        for i, v in enumerate(p):
            rows[i]["scores"]["reward head"] = float(v)
    else:
        profile["reward_head"] = {"skipped": "no trained head given for this model (heads={model: dir})"}
    profile["signals"], profile["items"] = signals, rows
    return profile


def item_id(index: int, item: Item) -> str:
    """An item's id in the atlas: its place in the battery and its source ("007-arithmetic")."""
    return f"{index:03d}-{item.source}"


def check_head(model, head_dir) -> None:
    """Refuse a reward head that is missing, corrupt or of another width than `model`, before any reading."""
    from metalens.introspect import ReservedHead

    head = ReservedHead.load(head_dir)
    if head.weight.shape[1] != model.d_model:
        raise ValueError(f"The head in {head_dir} has width {head.weight.shape[1]}; {model.name} has d_model "
                         f"{model.d_model}: train a head for this model (`metalens introspect train`).")


def _ci3(y, score, groups, cfg) -> tuple[float, float, float]:
    ci = metacog.auroc_ci(y, score, groups, cfg.n_boot, cfg.seed)
    return ci.estimate, ci.low, ci.high


def _save_sweep(model, read: Readout, y, groups, layers, probe, cfg, path: Path) -> None:
    """The per-layer probes, fit on all items, as the probes area's `LayerSweep` (its report and loader);
    `cv_accuracy` is the grouped held-out accuracy of the atlas's folds."""
    from metalens.probes import LayerSweep, train_probe
    from metalens.sites import resid_post

    probes = []
    for L in layers:
        p = train_probe(read.resid[:, L].numpy(), y.astype(int), test_size=0, cv=0, C=cfg.probe_c, seed=cfg.seed,
                        metadata={"layer": L, "site": resid_post(L), "labels": "answer correct"})
        p.cv_accuracy = float(((probe["per_layer"][L] > 0.5) == y).mean())
        p.cv_std = 0.0
        probes.append(p)
    meta = {**model.metadata(), "dataset": "atlas battery (answer correct)", "n_texts": len(y), "grouped_cv": cfg.cv,
            "positions": f"last token of {cfg.probe_at} prompt"}
    LayerSweep(layers, probes, [resid_post(L) for L in layers], meta).save(path)


def run_atlas(models, config: AtlasConfig | None = None, *, out=None, progress: bool = True,
              device: str | None = None, dtype: str | None = None, command: str | None = None) -> AtlasResult:
    """The atlas of one or more models (loaded `Model`s or names to load, one at a time).

    With `out`, each model's profile is saved as it finishes (`out/models/NAME/profile.json`) and
    reused by a rerun with the same config, then `out/atlas.json` and `out/atlas.html` are written.
    """
    if config is not None and not isinstance(config, AtlasConfig):
        raise TypeError(f"config must be an AtlasConfig, not {type(config).__name__}.")
    cfg = config or AtlasConfig()
    models = [models] if isinstance(models, (str, metalens.Model)) else list(models)
    if not models:
        raise ValueError("No models given: pass a name or a loaded Model (or a list of them).")
    names = [m.name if isinstance(m, metalens.Model) else str(m) for m in models]
    start = time.time()
    exclude, overlap = training_overlap(models)
    items = atlas_items(cfg, exclude)
    overlap["n_excluded_overlap"] = excluded_overlap(cfg, exclude)
    overlap["n_overlap_left"] = sum(it.question.removeprefix("What is ").removesuffix("?") in exclude
                                    for it in items if it.source == "arithmetic")
    if overlap["n_overlap_left"]:  # redrawing guarantees none; a user's items file may still hold some
        raise ValueError(f"{overlap['n_overlap_left']} arithmetic items are post-training problems: redraw them.")
    out_dir = Path(out) if out is not None else None
    log = print if progress else (lambda *a, **k: None)
    profiles = []
    for given, name in zip(models, names):
        folder = out_dir / "models" / _slug(name) if out_dir is not None else None
        key = _fingerprint(name, cfg, items)
        if folder is not None and (folder / "profile.json").exists():
            saved = json.loads((folder / "profile.json").read_text())
            if saved.get("fingerprint") == key:
                log(f"[atlas] {name}: reusing {folder / 'profile.json'}")
                profiles.append(saved)
                continue
        t0 = time.time()
        model = given if isinstance(given, metalens.Model) else metalens.load_model(name, device=device, dtype=dtype)
        profile = model_profile(model, items, cfg, head_dir=cfg.heads.get(name), out=folder, progress=progress)
        profile.update(model=name, fingerprint=key, seconds=time.time() - t0,
                       command=command or atlas_command([name], cfg, out if out is not None else "DIR"))
        if folder is not None:
            profile["links"] = {k: f"models/{_slug(name)}/{v}" for k, v in profile["links"].items()}
            save_json(folder / "profile.json", profile)
            profile = json.loads((folder / "profile.json").read_text())  # what a reuse would read
        profiles.append(profile)
        log(f"[atlas] {name}: {headline(profile)} ({time.time() - t0:.0f}s)")
    family = add_family(profiles, cfg.n_boot, cfg.seed)
    family["summary"] = summary_lines(profiles, family)  # the CLI prints it
    result = AtlasResult(profiles, cfg, command or atlas_command(names, cfg, out if out is not None else "DIR"),
                         time.time() - start, str(out_dir) if out_dir is not None else None, family, overlap)
    if out_dir is not None:
        result.save(out_dir)
    return result


def _fmt(x) -> str:
    # None / NaN: not computed (one class absent, or a bootstrap over too few items), not a number
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.2f}"


def headline(profile: dict) -> str:
    """One line: accuracy, the best reported signal's AUROC, the probe's, the withdraw delta."""
    acc = profile["accuracy"]
    sig = {s["name"]: s for s in profile["signals"]}
    said = [sig[n] for n in REPORTED if n in sig]
    best = max(said, key=lambda s: -1 if s["auroc"] is None or np.isnan(s["auroc"]) else s["auroc"])
    wd = sig["keep/withdraw"]["withdraw_delta"]
    text = (f"accuracy {_fmt(acc['accuracy'])} (n={acc['n']}); best reported signal {best['name']} AUROC "
            f"{_fmt(best['auroc'])} [{_fmt(best['auroc_low'])}, {_fmt(best['auroc_high'])}]")
    if "correctness probe" in sig:
        p = sig["correctness probe"]
        text += f"; probe {_fmt(p['auroc'])} [{_fmt(p['auroc_low'])}, {_fmt(p['auroc_high'])}]"
    return text + f"; withdraw delta {_fmt(wd['estimate'])} [{_fmt(wd['low'])}, {_fmt(wd['high'])}]"


def atlas_demo(model, out) -> dict:
    """A quick atlas (24 items, `AtlasConfig.quick`) for `metalens demo`; returns the key numbers and a `headline`."""
    result = run_atlas([model], AtlasConfig.quick(), out=out, progress=False)
    p = result.models[0]
    sig = {s["name"]: s for s in p["signals"]}
    return {"headline": headline(p), "accuracy": p["accuracy"]["accuracy"], "n_items": p["n_items"],
            "aurocs": {n: s["auroc"] for n, s in sig.items()},
            "withdraw_delta": sig["keep/withdraw"]["withdraw_delta"]["estimate"],
            "gap": p.get("gap", {}).get("estimate"), "report": str(Path(out) / "atlas.html")}

"""Sensitivity of the ZIP-RC samplers to head quality (issue #29, pipeline 5, second half): from what
quality of head does a sampler replayed on stored rollouts beat majority voting at matched tokens?

A live sampler cannot read an oracle (a live prefix's future correctness is unknown), but every stored
sample's correctness and length are known, so the head-guided samplers that replay on stored pools
(prune-only, best-of-N) can be run with an oracle head of known reliability (`sampling.oracle`). The
pools are the published ones (`run_sample --cv k`: every question read by a head trained without its
fold); each trial re-reads them with an oracle of quality q and replays them with `replay`, the
published comparison (`sampler.pareto`) judged by one rule. The trained head's own pools go through the
same `replay`, so it sits beside the curve at the quality its AUROC equals.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from metalens import stats
from metalens.introspect.heads.features import cached_positions
from metalens.introspect.sampling.oracle import LENGTHS, UNIT, check_quality, oracle_pools, reading_quality, reordered
from metalens.introspect.sampling.sampler import PoolSample, out_of_fold_pools, pareto
from metalens.introspect.workflows.common import adapted
from metalens.introspect.workflows.train import TrainResult, as_trained
from metalens.sensitivity import SensitivityResult, Trial, check_seeds, check_strengths, measure_sensitivity

DEFAULT_QUALITIES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
ALPHA = 0.05
SAMPLERS = {"prune-only": "adaptive", "best-of-n": "best-of"}  # --sampler -> the prefix of pareto's row names
KEPT = ("method", "alpha", "majority_n", "tokens", "majority_tokens", "accuracy", "majority_accuracy", "wins", "ties",
        "losses", "p_sign")


def detection_rule(sampler: str) -> str:
    """The rule in words, for `sampler` (a key of `SAMPLERS`)."""
    return (f"the {sampler} sampler called better than majority voting at matched tokens, as the published replay "
            "compares them (sampler.pareto: per question against majority@N, N the smallest pool size spending at "
            "least the sampler's mean tokens): in at least one of its settings, more wins than losses and the exact "
            "two-sided sign test on the untied questions (the headline test of results/ziprc-gemma) below "
            f"{ALPHA} after Holm over pareto's whole family of replay comparisons (both prune-only starts x every "
            "token cost, and best-of-2..N)")


FALSE_POSITIVE_RULE = (
    "at quality 0 (every reading is the store's share of right samples: nothing about any sample or question) the "
    "sampler called better by the same rule. Only quality-0 runs can be false positives (the claim is about the "
    "correctness reading), so the share is the quality-0 row of the curve; its seeds differ only in the order in "
    "which each question's stored samples come (the same samples, not new stores). With the head's length reading "
    "kept (--length head), a quality-0 detection is chance or a gain that needs no correctness reading (length "
    "reading, finishing order): either way the claim about the reading would be false")


@dataclass
class OracleSamplerSensitivityConfig:
    """The published replay's settings (`train`: the train run whose store and head `run_sample` used; `cv`
    folds, token costs `alphas` (None: pareto's default sweep), latency cost `beta`, checkpoints `every`, the
    fold split's `seed`), which replayed sampler the rule counts (`sampler`), the oracle's length reading
    (`length`), the qualities (`strengths`, `oracle.UNIT`) and the seeds (each re-orders the pools and picks
    which samples the oracle misreads)."""

    train: object  # TrainResult or its folder
    cv: int = 5
    alphas: tuple[float, ...] | None = None
    beta: float = 0.0
    every: int = 4
    seed: int = 0
    sampler: str = "prune-only"
    length: str = "head"
    strengths: tuple[float, ...] = DEFAULT_QUALITIES
    seeds: int = 20

    def __post_init__(self):
        if not isinstance(self.train, TrainResult):
            self.train = str(self.train)
        self.alphas = None if self.alphas is None else tuple(float(a) for a in self.alphas)
        self.strengths = tuple(check_quality(s) for s in check_strengths(self.strengths))
        self.seeds = check_seeds(self.seeds)
        if self.cv < 2:
            raise ValueError(f"cv={self.cv}: the published comparison reads every question with a head trained "
                             "without its fold; use cv >= 2 (results/ziprc-gemma: 5).")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler={self.sampler!r}: pick one of {sorted(SAMPLERS)}.")
        if self.length not in LENGTHS:
            raise ValueError(f"length={self.length!r}: pick one of {list(LENGTHS)}.")
        if self.every < 1:
            raise ValueError(f"every={self.every}: checkpoints need at least one token between them.")

    def replay_settings(self) -> dict:
        """What `replay` passes to `pareto`, and the sampler the rule counts."""
        return {"alphas": self.alphas, "beta": self.beta, "every": self.every, "sampler": self.sampler}


def verdict(curves: dict, sampler: str) -> dict:
    """The rule (`detection_rule`) on `pareto`'s output: `detected`, the sampler's best row (smallest
    Holm-adjusted sign p among the rows ahead on wins, with `p_sign_holm`), per sampler how many rows were
    called better (`n_better`) or worse (`n_worse`), and, for reference, better under pareto's own Holm of the
    paired t-test (`n_better_by_t_holm`)."""
    rows = [r for r in curves["paired"] if r.get("majority_n")]
    adjusted = stats.holm([r["p_sign"] for r in rows])
    judged = []
    for row, p in zip(rows, adjusted.tolist()):
        judged.append({**{k: row[k] for k in KEPT}, "p_sign_holm": p,
                       "better": row["wins"] > row["losses"] and p < ALPHA,
                       "worse": row["losses"] > row["wins"] and p < ALPHA,
                       "better_by_t_holm": row["difference"] > 0 and row["p_holm"] < ALPHA})
    of = {name: [r for r in judged if r["method"].startswith(prefix)] for name, prefix in SAMPLERS.items()}
    mine = of[sampler]
    # its most favourable row: ahead on wins with the smallest adjusted p, else the least behind
    best = min(mine, key=lambda r: (r["wins"] <= r["losses"], r["p_sign_holm"], r["losses"] - r["wins"]),
               default=None)
    return {"detected": any(r["better"] for r in mine), "best": best, "n_rows": len(mine),
            "n_comparisons": len(judged), **{f"n_{key}": {k: int(sum(r[key] for r in v)) for k, v in of.items()}
                                             for key in ("better", "worse", "better_by_t_holm")},
            "majority_accuracy": [m["accuracy"] for m in curves["majority"]],
            "pass_at_n": curves["pass_at_n"][-1]["accuracy"], "n_tasks": curves["n_tasks"]}


def replay(pools: list[list[PoolSample]], config: OracleSamplerSensitivityConfig) -> dict:
    """The published replay of `pools` (`sampler.pareto` with the config's token costs, latency cost and
    checkpoints) judged by the rule: `verdict`'s dict. The oracle trials and the trained head both go
    through here, so one comparison and one rule judge them."""
    return verdict(pareto(pools, config.alphas, config.beta, config.every), config.sampler)


def check_pools(pools: list[list[PoolSample]]) -> None:
    """Refuse pools a sampler could never beat majority voting on: no question holding both right and wrong
    samples (majority voting then picks as well as any reading), or fewer than two samples a question."""
    if not pools or min(len(p) for p in pools) < 2:
        raise ValueError("Every question needs at least 2 stored samples for the samplers to choose among: "
                         "sample the store with --n-samples >= 2.")
    if not any(0 < sum(s.reward for s in p) < len(p) for p in pools):
        raise ValueError("No question has both right and wrong samples, so no reading could beat majority voting "
                         "here: use a store whose questions the model solves sometimes (e.g. easier --levels).")


def pools_digest(pools: list[list[PoolSample]]) -> str:
    """A sha256 of the pools' answers, rewards and lengths (not the head's readings): a resumed sweep must
    replay the same samples."""
    content = [[(s.answer, int(s.reward), s.n_tokens) for s in pool] for pool in pools]
    return hashlib.sha256(json.dumps(content).encode()).hexdigest()


def oracle_trial(pools: list[list[PoolSample]], config: OracleSamplerSensitivityConfig, quality: float,
                 seed: int) -> Trial:
    """One run: the pools in seed `seed`'s order, read by an oracle of `quality`, replayed and judged."""
    read = oracle_pools(reordered(pools, seed), quality, seed, config.length)
    judged = replay(read, config)
    detected = judged["detected"]
    return Trial(detected, detected if quality == 0 else None, {**judged, "reading": reading_quality(read)})


def trained_placement(pools: list[list[PoolSample]], config: OracleSamplerSensitivityConfig) -> dict:
    """The trained head's own pools through `replay`: in their stored order (the published replay) and in
    each seed's order (the curve's), with its reading's AUROCs and the oracle qualities they equal."""
    published = replay(pools, config)
    hits = [replay(reordered(pools, k), config)["detected"] for k in range(config.seeds)]
    share = stats.wilson_ci(sum(hits), len(hits))
    return {"reading": reading_quality(pools), "published_order": published,
            "detected_share": share.estimate, "low": share.low, "high": share.high, "n_seeds": len(hits)}


def sweep_pools(pools: list[list[PoolSample]], config: OracleSamplerSensitivityConfig, *,
                settings: dict | None = None, out: str | Path | None = None,
                progress: bool = True) -> SensitivityResult:
    """Detection curve of the replayed sampler against oracle quality on `pools` (a trained head's), with the
    trained head placed beside it (`settings['trained_head']`, added after the sweep); with `out`, resumable."""
    check_pools(pools)
    settings = dict(settings or {})
    model = f", {settings['model']}" if "model" in settings else ""
    plan = {"title": f"ZIP-RC {config.sampler} sampler vs majority voting, oracle head{model}", **settings,
            "pipeline": "out-of-fold pools (run_sample --cv) re-read by an oracle (sampling.oracle), replayed by "
                        "sampler.pareto", "replay": config.replay_settings(), "length_reading": config.length,
            "alpha": ALPHA, "n_tasks": len(pools), "pool_size": min(len(p) for p in pools),
            "pools_sha256": pools_digest(pools)}
    result = measure_sensitivity(lambda q, k: oracle_trial(pools, config, q, k), config.strengths, config.seeds,
                                 unit=UNIT, rule=detection_rule(config.sampler),
                                 false_positive_rule=FALSE_POSITIVE_RULE, settings=plan, out=out, progress=progress)
    result.settings["trained_head"] = trained_placement(pools, config)  # a reference beside the curve, not a setting
    if out is not None:
        result.save(out)
    return result


def trained_pools(model, config: OracleSamplerSensitivityConfig, progress: bool = True) -> list[list[PoolSample]]:
    """The published pools: every question of the train run's store read by a head trained without its fold,
    built as `run_sample` builds them with `cv` (same folds, seed and starting head)."""
    trained = as_trained(config.train)
    head = trained.head
    head.check_fits(model)
    records = trained.records(None, config.cv)
    with adapted(model, trained):
        positions = cached_positions(model, records, head.spec, trained.cache(), progress)
        return out_of_fold_pools(model, positions, records, head.spec, config.cv, seed=config.seed, start=head.start)


def run_oracle_sampler_sensitivity(model, config: OracleSamplerSensitivityConfig, *, out: str | Path | None = None,
                                   progress: bool = True) -> SensitivityResult:
    """Detection curve of the replayed sampler on `model`'s published pools against oracle quality, the
    trained head placed beside it; with `out`, resumable (runs/), results.json and report.html there."""
    pools = trained_pools(model, config, progress)
    train = config.train.out if isinstance(config.train, TrainResult) else config.train
    settings = {"model": model.name, "train": str(train), "cv": config.cv, "seed": config.seed}
    return sweep_pools(pools, config, settings=settings, out=out, progress=progress)


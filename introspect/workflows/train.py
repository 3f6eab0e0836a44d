"""`run_train`: rollouts (generated or resumed), the reserved-logit head, and its held-out reward AUROC."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import dataclasses

import torch

from metalens.introspect.heads.bins import BinSpec, fitted_edges
from metalens.introspect.heads.features import flatten
from metalens.introspect.heads.head import ReservedHead
from metalens.introspect.evaluation.metrics import require_finite, summary
from metalens.introspect.rollouts.store import (Question, few_shot_prefix, generate_rollouts, load_rollouts, solve_rates,
                                          task_questions)
from metalens.introspect.heads.features import by_task, cache_path, cached_positions
from metalens.introspect.rollouts.splits import split_tasks
from metalens.introspect.rollouts.store import is_complete, rollouts_settings
from metalens.introspect.workflows.common import (read_results, refuse_cv_of_trained_modes, resolve_store,
                                                  store_path, train_dir, write_results)
from metalens.introspect.heads.train import shuffled, train_head
from metalens.introspect.heads.values import relabel_with_head

MODES = ("head", "lora", "full")
ROLLOUT_SETTINGS = ("format", "model", "revision", "n_tasks", "n_samples", "max_new_tokens", "temperature", "min_p",
                    "batch_questions", "seed", "tasks_sha256", "sha256")
MONITOR_SAMPLES = 32  # mode full: about this many held-out samples (every n // 32-th) whose CE is read during
# training (read, never selected on)
LENGTH_BINS = ("geometric", "fitted")
# Per-mode defaults of the trained modes (lora: the earlier runs; full: ZIP-RC's KL coefficient).
DEFAULTS = {"lora": {"train_steps": 20, "lr": 1e-3, "kl_coef": 1.0, "batch_size": 2},
            "full": {"train_steps": 100, "lr": 1e-5, "kl_coef": 10.0, "batch_size": 4}}


@dataclass
class TrainConfig:
    """Settings of `run_train`: which rollouts, which head, how it is fitted and split."""

    questions: list[Question] | None = None  # default: `n_questions` questions of `task` at `levels`
    rollouts: str | Path | None = None  # a finished store is reused as is; else rollouts go here (default OUT/rollouts)
    task: str = "arithmetic"  # built-in generator when no questions are given: 'arithmetic' or 'words'
    n_questions: int = 80
    levels: tuple[int, ...] = (1, 2, 3, 4)
    n_samples: int = 6
    max_new_tokens: int = 40
    temperature: float = 1.0
    min_p: float | None = None  # min-p sampling of the rollouts (ZIP-RC: T = 1.0, min_p = 0.1)
    batch_questions: int = 1  # questions per generation call (their samples batched together)
    mode: str = "head"  # 'head': reserved rows only; 'lora': adapters + rows, KL; 'full': every weight, sparse KL
    spec: BinSpec = field(default_factory=BinSpec)
    length_bins: str = "geometric"  # 'fitted': length edges from the rollouts' lengths (`bins.fitted_edges`)
    steps: int = 100  # L-BFGS iterations of every head-mode fit (the head, lora/full inits, baselines)
    train_steps: int | None = None  # optimiser steps of lora / full (default per mode: DEFAULTS)
    lr: float | None = None  # lora: Adam lr (constant); full: AdamW peak lr (warmup + cosine)
    kl_coef: float | None = None  # weight of KL(frozen || trained) over the normal vocabulary
    warmup: int = 5  # full: warmup steps
    accum: int = 4  # full: micro-batches per optimiser step
    batch_size: int | None = None  # lora / full: samples per (micro-)batch (default per mode: DEFAULTS)
    grad_clip: float = 1.0  # full
    top_k: int = 32  # full: frozen-model tokens kept in the KL (renormalised)
    value_labels: bool = False  # second stage on a first head's smoothed expected reward (values.py)
    value_window: int = 64  # last positions averaged into a rollout's value
    n_value_states: int = 7  # reward states of the value-labelled head
    test_fraction: float = 0.3
    seed: int = 0

    def __post_init__(self):
        self.rollouts = None if self.rollouts is None else str(self.rollouts)  # JSON-ready, equal after load
        self.levels = tuple(self.levels)
        if self.questions is None and self.rollouts is None:  # checked here, before a model loads
            from metalens.tasks import arithmetic, words

            known = sorted((words.LEVELS if self.task == "words" else arithmetic.LEVELS))
            if not self.levels or any(level not in known for level in self.levels):
                raise ValueError(f"levels {list(self.levels)}: the {self.task} generator has levels {known}.")
        if self.mode not in MODES:
            raise ValueError(f"Unknown mode '{self.mode}': use 'head' (reserved rows only), 'lora' or 'full'.")
        if self.length_bins not in LENGTH_BINS:
            raise ValueError(f"length_bins='{self.length_bins}': use 'geometric' (spec.edges) or 'fitted'.")
        if self.value_labels and self.mode == "lora":
            raise ValueError("value_labels with mode 'lora' is not supported: use mode 'head' or 'full'.")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction={self.test_fraction}: hold out a share strictly between 0 and 1.")
        for name, value in DEFAULTS.get(self.mode, {}).items():
            if getattr(self, name) is None:
                setattr(self, name, value)

    def to_dict(self) -> dict:
        """JSON form (user questions by count only: they are in the rollouts)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("questions", "spec")}
        return {**data, "spec": self.spec.to_dict(), "n_given_questions": len(self.questions or [])}

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """The config `to_dict` wrote (without user questions); `lora_steps` of older runs is `train_steps`."""
        names = {f.name for f in fields(cls)} - {"questions", "spec"}
        kept = {k: v for k, v in data.items() if k in names}
        if "lora_steps" in data and kept.get("train_steps") is None and data.get("mode") == "lora":
            kept["train_steps"] = data["lora_steps"]
        return cls(**kept, spec=BinSpec.from_dict(data["spec"]))

    def full_config(self):
        """The `full.FullConfig` these settings give."""
        from metalens.introspect.heads.full import FullConfig

        return FullConfig(steps=self.train_steps, lr=self.lr, kl_coef=self.kl_coef, warmup=self.warmup,
                          accum=self.accum, batch_size=self.batch_size, grad_clip=self.grad_clip, top_k=self.top_k,
                          seed=self.seed)


@dataclass
class TrainResult:
    """The trained head, where its rollouts are, and how well it reads rewards on held-out questions."""

    head: ReservedHead
    config: TrainConfig
    rollouts: str
    solve_rates: dict[int, float]  # level -> share of correct samples
    n_tasks: int
    train_tasks: list[int]
    test_tasks: list[int]
    heldout_all_positions: dict[str, dict]  # predictor -> {auroc, brier, ece, n} on held-out questions
    train_all_positions: dict[str, dict]
    kl_normal_vocab_heldout: float | None = None  # modes lora / full: KL(frozen || trained), nats per token
    normal_vocab_heldout: dict | None = None  # modes lora / full: `drift.Drift` summary (KL, NLLs, top-1 agreement)
    lora_history: list[dict] | None = None
    adapter: object = None  # mode lora: the LoraAdapter the head's states come from
    spec: dict | None = None  # the head's bins (fitted edges, value states)
    full_history: list[dict] | None = None  # mode full: per step lr, ce, kl, grad norm
    weights: object = None  # mode full: the FullWeights the head's states come from
    rollout_settings: dict | None = None  # how the store was sampled (its manifest): what a named store's
    # results rest on, whatever the config's own sampling fields (unused then) say
    value_labels: dict | None = None  # value stage: the values' summary (and the first head's held-out scores)
    out: str | None = None  # the folder it was saved to or loaded from (not in results.json)

    @property
    def heldout_auroc(self) -> float:
        """Held-out reward AUROC of the head's P(correct) over all positions."""
        return self.heldout_all_positions["head"]["auroc"]

    @property
    def shuffled_auroc(self) -> float:
        """The same for a head trained on rewards shuffled across samples (the no-signal baseline)."""
        return self.heldout_all_positions["shuffled"]["auroc"]

    def data(self) -> dict:
        """What results.json holds (the head and adapter are written beside it)."""
        skip = {"head", "config", "adapter", "weights", "spec", "out"}
        return {"config": self.config.to_dict(), "mode": self.config.mode, "spec": self.head.spec.to_dict(),
                **{f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}}

    def save(self, out: str | Path) -> Path:
        """Write results.json, report.html, head/ and (mode lora) adapter/ into `out`."""
        out = Path(out)
        self.out = str(out)
        self.head.save(out / "head")
        if self.adapter is not None:
            self.adapter.save(out / "adapter")
        if self.weights is not None:
            self.weights.save(out / "weights")
        spec = self.head.spec
        curve = []
        if self.full_history:
            from metalens.introspect.evaluation.figures import training_figure

            curve = [("Training curve (mode full)", training_figure(self.full_history))]
        return write_results(out, "introspect train", self.data(), self.head.metadata, [
            ("What was trained", f"Mode '{self.config.mode}': {spec.n_bins} reserved tokens from id {self.head.start} "
                                 f"({spec.n_rewards} reward states x {spec.n_lengths} remaining-length bins)."),
            ("Solve rate per level", [{"level": k, "solve_rate": v} for k, v in self.solve_rates.items()]),
            ("Held-out reward AUROC (all positions)",
             [{"predictor": k, **v} for k, v in self.heldout_all_positions.items()]),
        ] + curve)

    @classmethod
    def load(cls, out: str | Path) -> "TrainResult":
        """The result `save` wrote into `out` (a train run's folder, or its `head/` folder)."""
        out = train_dir(out)
        data = read_results(out)
        adapter = None
        if (out / "adapter").is_dir():
            from metalens.introspect.heads.lora import LoraAdapter

            adapter = LoraAdapter.load(out / "adapter")
        weights = None
        if (out / "weights").is_dir():
            from metalens.introspect.heads.full import FullWeights

            weights = FullWeights.load(out / "weights")
        skip = ("head", "config", "adapter", "weights", "out")
        kept = {f.name: data.get(f.name) for f in fields(cls) if f.name not in skip}
        kept["solve_rates"] = {int(k): v for k, v in data["solve_rates"].items()}
        return cls(head=ReservedHead.load(out / "head"), config=TrainConfig.from_dict(data["config"]),
                   adapter=adapter, weights=weights, out=str(out), **kept)

    def rollouts_dir(self) -> Path:
        """The rollout store the head was trained on, found from wherever the command runs."""
        return resolve_store(self.rollouts, self.out)

    def records(self, rollouts=None, cv: int = 0) -> list[dict]:
        """The rollout records of `rollouts` (default: its own store); `cv` >= 2 is refused for a lora
        or full run (`common.refuse_cv_of_trained_modes`)."""
        refuse_cv_of_trained_modes(self.head, cv, self.out or "(not saved)")
        return load_rollouts(rollouts if rollouts is not None else self.rollouts_dir())

    def cache(self) -> Path | None:
        """Where its hidden states are cached (beside the head), None when it is not saved."""
        return cache_path(Path(self.out), self.head.metadata.get("mode", "head")) if self.out else None


def as_trained(train) -> TrainResult:
    """`train` as a TrainResult: itself, or the one `TrainResult.load` reads from its folder."""
    return train if isinstance(train, TrainResult) else TrainResult.load(train)


def config_dict(config) -> dict:
    """A workflow config as results.json holds it: its `train` run (when it has one) by folder."""
    data = {f.name: getattr(config, f.name) for f in fields(config)}
    if isinstance(data.get("train"), TrainResult):
        data["train"] = data["train"].out
    return data


def run_train(model, config: TrainConfig, *, out: str | Path | None = None, progress: bool = True) -> TrainResult:
    """Generate (or resume) rollouts, train the head in `config.mode`, score it on held-out questions.

    With `out`, rollouts (unless `config.rollouts` names them), the hidden-state cache and the
    result (results.json, report.html, head/, adapter/) are written there. `model` is handed back
    unchanged (lora adapters are unloaded).
    """
    if out is None and config.rollouts is None:
        raise ValueError("run_train needs a directory for the rollouts: pass out=DIR or TrainConfig(rollouts=DIR).")
    out = Path(out) if out is not None else None
    seed = config.seed
    # A finished store the user named is reused as it is; otherwise generate_rollouts resumes the
    # store, and refuses one written with other settings instead of silently training on it.
    rollouts = Path(config.rollouts) if config.rollouts is not None else out / "rollouts"
    if not (config.rollouts is not None and is_complete(rollouts)):
        questions = config.questions or task_questions(config.task, config.n_questions, config.levels, seed)
        prefix = None if config.task == "arithmetic" or config.questions else few_shot_prefix(task=config.task)
        generate_rollouts(model, questions, rollouts, config.n_samples, config.max_new_tokens, config.temperature,
                          seed, prefix=prefix, progress=progress, min_p=config.min_p,
                          batch_questions=config.batch_questions)
    records = load_rollouts(rollouts)
    spec = head_spec(config, records)
    train_ids, test_ids = split_tasks(records, config.test_fraction, seed)
    cache = (lambda mode: cache_path(out, mode)) if out is not None else (lambda mode: None)  # noqa: E731
    base = cached_positions(model, records, spec, cache("head"), progress)  # the frozen model's states
    labelled, extra = base, {}
    if config.value_labels:  # the first stage: a head on graded rewards, read back as smoothed values
        labelled, extra["value_labels"] = _value_stage(model, config, spec, base, train_ids, test_ids)
    if config.mode == "head":
        positions = base
        head = train_head(model, by_task(labelled, train_ids), spec, steps=config.steps, seed=seed)
        head.metadata["labels"] = "values" if config.value_labels else "graded rewards"
    elif config.mode == "lora":
        head, positions, more = _train_lora(model, config, spec, records, base, train_ids, test_ids, cache, progress)
        extra.update(more)
    else:
        head, positions, more = _train_full(model, config, spec, records, labelled, train_ids, test_ids, cache,
                                            progress)
        extra.update(more)
    train, test = by_task(positions, train_ids), by_task(positions, test_ids)
    shuf = train_head(model, shuffled(train, spec, seed), spec, steps=config.steps, seed=seed)
    stored = store_path(rollouts, out)  # relative to the run: evaluating from another directory finds it
    head.metadata.update(rollouts=stored, train_tasks=train_ids, test_tasks=test_ids,
                         n_regraded=sum(r["regraded"] for r in records))  # rewards the current grader changed

    def score(h: ReservedHead, p) -> dict:
        return summary(p.reward.numpy(), h.spec.p_correct(h.probs_from_hidden(model, p.hidden)).numpy())

    heldout = {"head": score(head, test), "shuffled": score(shuf, test)}
    require_finite(heldout["head"]["auroc"], "The held-out reward AUROC",
                   "every held-out sample has the same reward; draw more questions or samples (--n-tasks, "
                   "--n-samples) or raise --test-fraction.")
    if config.mode in ("lora", "full"):  # the head-mode rows it started from, on the frozen model's states
        heldout[f"head mode ({config.mode} init)"] = score(extra.pop("init"), by_task(base, test_ids))
    if config.value_labels:
        heldout["first stage (graded rewards)"] = extra["value_labels"].pop("first_heldout")
    manifest = rollouts_settings(rollouts)
    settings = {k: manifest.get(k) for k in ROLLOUT_SETTINGS}
    result = TrainResult(head, config, stored, solve_rates(records), len(records), train_ids, test_ids,
                         heldout, {"head": score(head, train)}, spec=spec.to_dict(), rollout_settings=settings,
                         **extra)
    if out is not None:
        result.save(out)
    return result


def head_spec(config: TrainConfig, records: list[dict]) -> BinSpec:
    """The bins of the head: `config.spec`, with its length edges fitted to the rollouts' lengths
    when `length_bins == 'fitted'`, and `n_value_states` reward states with value labels."""
    edges = config.spec.edges
    if config.length_bins == "fitted":
        edges = fitted_edges([len(c) for r in records for c in r["completions"]], len(config.spec.edges))
    return BinSpec(config.n_value_states if config.value_labels else config.spec.n_rewards, tuple(edges))


def _value_stage(model, config, spec, base, train_ids, test_ids):
    """Stage one of value labels: a head-mode fit on graded rewards (2 states), read on every
    position and smoothed per rollout into a value; returns (relabelled positions, summary).

    ZIP-RC's first stage trains the whole model (KL 0); here it is the head-mode fit on the frozen
    states (seconds), for every mode.
    """
    import numpy as np

    binary = BinSpec(2, spec.edges)
    graded = dataclasses.replace(base, bin=binary.joint_bin(base.reward.long(), base.remaining))
    first = train_head(model, by_task(graded, train_ids), binary, steps=config.steps, seed=config.seed)
    labelled, values = relabel_with_head(model, first, base, spec, config.value_window)
    test = by_task(graded, test_ids)
    first_heldout = summary(test.reward.numpy(), binary.p_correct(first.probs_from_hidden(model, test.hidden)).numpy())
    samples = sorted(values)
    graded_reward = np.array([int(base.reward[base.sample == s][0]) for s in samples])
    value = np.array([values[s] for s in samples])
    states = spec.reward_state(torch.tensor(value)).numpy()
    return labelled, {"window": config.value_window, "n_states": spec.n_rewards, "first_heldout": first_heldout,
                      "state_counts": np.bincount(states, minlength=spec.n_rewards).tolist(),
                      "mean_value_correct": _mean_or_none(value[graded_reward == 1]),
                      "mean_value_incorrect": _mean_or_none(value[graded_reward == 0]),
                      "value_vs_graded": summary(graded_reward, value)}


def _mean_or_none(values) -> float | None:
    return float(values.mean()) if len(values) else None


def _train_full(model, config, spec, records, labelled, train_ids, test_ids, cache, progress):
    """Mode full: rows started from the head fit, every weight trained, states re-read through them."""
    from metalens.introspect.heads.full import measure_drift, train_full, weights_applied

    seed = config.seed
    train_pos = by_task(labelled, train_ids)
    init = train_head(model, train_pos, spec, steps=config.steps, seed=seed)
    rows = flatten(records)  # positions.sample indexes these rows
    train_samples = train_pos.sample.unique(sorted=True).tolist()
    labels = [train_pos.bin[train_pos.sample == i] for i in train_samples]
    test_pos = by_task(labelled, test_ids)
    watch = test_pos.sample.unique(sorted=True).tolist()[:: max(len(test_pos.sample.unique()) // MONITOR_SAMPLES, 1)]
    monitor = ([rows[i] for i in watch], [test_pos.bin[test_pos.sample == i] for i in watch])  # a held-out curve
    head, weights, history = train_full(model, [rows[i] for i in train_samples], labels, spec, config.full_config(),
                                        init=init, monitor=monitor, progress=progress)
    held = set(test_ids)
    drift = measure_drift(model, weights, [r for r in rows if r["task_index"] in held], head.token_ids)
    if cache("full") is not None:
        cache("full").unlink(missing_ok=True)  # states of earlier weights are stale
    with weights_applied(model, weights):
        positions = cached_positions(model, records, spec, cache("full"), progress)  # the trained model's states
    if config.value_labels:  # train/test scores read graded rewards; the bins carry the values
        positions = dataclasses.replace(positions, bin=labelled.bin)
    return head, positions, {"init": init, "kl_normal_vocab_heldout": drift["kl"], "normal_vocab_heldout": drift,
                             "full_history": history,
                             "weights": weights}


def _train_lora(model, config, spec, records, base, train_ids, test_ids, cache, progress):
    """Mode lora: rows started from the head fit, adapters + rows trained, states re-read through them."""
    from metalens.introspect.heads.lora import LoraAdapter, measure_drift, train_lora

    seed = config.seed
    init = train_head(model, by_task(base, train_ids), spec, steps=config.steps, seed=seed)
    train_recs = [r for r in records if r["task_index"] in set(train_ids)]
    test_recs = [r for r in records if r["task_index"] in set(test_ids)]
    head, peft_model, history = train_lora(model, train_recs, spec, steps=config.train_steps,
                                          batch_size=config.batch_size, lr=config.lr, kl_coef=config.kl_coef, seed=seed,
                                          init=init, progress=progress)
    try:
        drift = measure_drift(model, peft_model, test_recs, head)
        adapter = LoraAdapter.from_peft(peft_model)
        if cache("lora") is not None:
            cache("lora").unlink(missing_ok=True)  # states of an earlier adapter are stale
        positions = cached_positions(model, records, spec, cache("lora"), progress)  # the adapted model's states
    finally:
        peft_model.unload()  # leave `model` as it was given (adapters removed, not merged)
    return head, positions, {"init": init, "kl_normal_vocab_heldout": drift["kl"], "normal_vocab_heldout": drift,
                             "lora_history": history, "adapter": adapter}

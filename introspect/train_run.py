"""`run_train`: rollouts (generated or resumed), the reserved-logit head, and its held-out reward AUROC."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from metalens.introspect.bins import BinSpec
from metalens.introspect.head import ReservedHead
from metalens.introspect.metrics import summary
from metalens.introspect.rollouts import Question, arithmetic_questions, generate_rollouts, load_rollouts, solve_rates
from metalens.introspect.runs import (by_task, cache_path, cached_positions, is_complete, read_results, split_tasks,
                                      write_results)
from metalens.introspect.train import shuffled, train_head

MODES = ("head", "lora")


@dataclass
class TrainConfig:
    """Settings of `run_train`: which rollouts, which head, how it is fitted and split."""

    questions: list[Question] | None = None  # default: `n_questions` arithmetic questions at `levels`
    rollouts: str | Path | None = None  # a finished store is reused as is; else rollouts go here (default OUT/rollouts)
    n_questions: int = 80
    levels: tuple[int, ...] = (1, 2, 3, 4)
    n_samples: int = 6
    max_new_tokens: int = 40
    temperature: float = 1.0
    mode: str = "head"  # 'head': the reserved rows only; 'lora': adapters + rows with a KL penalty
    spec: BinSpec = field(default_factory=BinSpec)
    steps: int = 100  # L-BFGS iterations of the head fit
    lora_steps: int = 20
    test_fraction: float = 0.3
    seed: int = 0

    def __post_init__(self):
        self.rollouts = None if self.rollouts is None else str(self.rollouts)  # JSON-ready, equal after load
        self.levels = tuple(self.levels)
        if self.mode not in MODES:
            raise ValueError(f"Unknown mode '{self.mode}': use 'head' (reserved rows only) or 'lora'.")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction={self.test_fraction}: hold out a share strictly between 0 and 1.")

    def to_dict(self) -> dict:
        """JSON form (user questions by count only: they are in the rollouts)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("questions", "spec")}
        return {**data, "spec": self.spec.to_dict(), "n_given_questions": len(self.questions or [])}

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """The config `to_dict` wrote (without user questions)."""
        names = {f.name for f in fields(cls)} - {"questions", "spec"}
        kept = {k: v for k, v in data.items() if k in names}
        return cls(**kept, spec=BinSpec.from_dict(data["spec"]))


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
    kl_normal_vocab_heldout: float | None = None  # mode lora: KL(frozen || adapted), nats per token
    lora_history: list[dict] | None = None
    adapter: object = None  # mode lora: the LoraAdapter the head's states come from

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
        skip = {"head", "config", "adapter"}
        return {"config": self.config.to_dict(), "mode": self.config.mode, "spec": self.config.spec.to_dict(),
                **{f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}}

    def save(self, out: str | Path) -> Path:
        """Write results.json, report.html, head/ and (mode lora) adapter/ into `out`."""
        out = Path(out)
        self.head.save(out / "head")
        if self.adapter is not None:
            self.adapter.save(out / "adapter")
        spec = self.config.spec
        return write_results(out, "introspect train", self.data(), self.head.metadata, [
            ("What was trained", f"Mode '{self.config.mode}': {spec.n_bins} reserved tokens from id {self.head.start} "
                                 f"({spec.n_rewards} reward states x {spec.n_lengths} remaining-length bins)."),
            ("Solve rate per level", [{"level": k, "solve_rate": v} for k, v in self.solve_rates.items()]),
            ("Held-out reward AUROC (all positions)",
             [{"predictor": k, **v} for k, v in self.heldout_all_positions.items()]),
        ])

    @classmethod
    def load(cls, out: str | Path) -> "TrainResult":
        """The result `save` wrote into `out`."""
        data, out = read_results(out), Path(out)
        adapter = None
        if (out / "adapter").is_dir():
            from metalens.introspect.lora import LoraAdapter

            adapter = LoraAdapter.load(out / "adapter")
        kept = {f.name: data.get(f.name) for f in fields(cls) if f.name not in ("head", "config", "adapter")}
        kept["solve_rates"] = {int(k): v for k, v in data["solve_rates"].items()}
        return cls(head=ReservedHead.load(out / "head"), config=TrainConfig.from_dict(data["config"]),
                   adapter=adapter, **kept)


def run_train(model, config: TrainConfig, *, out: str | Path | None = None, progress: bool = True) -> TrainResult:
    """Generate (or resume) rollouts, train the head in `config.mode`, score it on held-out questions.

    With `out`, rollouts (unless `config.rollouts` names them), the hidden-state cache and the
    result (results.json, report.html, head/, adapter/) are written there. `model` is handed back
    unchanged (lora adapters are unloaded).
    """
    if out is None and config.rollouts is None:
        raise ValueError("run_train needs a directory for the rollouts: pass out=DIR or TrainConfig(rollouts=DIR).")
    out = Path(out) if out is not None else None
    spec, seed = config.spec, config.seed
    # A finished store the user named is reused as it is; otherwise generate_rollouts resumes the
    # store, and refuses one written with other settings instead of silently training on it.
    rollouts = Path(config.rollouts) if config.rollouts is not None else out / "rollouts"
    if not (config.rollouts is not None and is_complete(rollouts)):
        questions = config.questions or arithmetic_questions(config.n_questions, config.levels, seed)
        generate_rollouts(model, questions, rollouts, config.n_samples, config.max_new_tokens, config.temperature,
                          seed, progress=progress)
    records = load_rollouts(rollouts)
    train_ids, test_ids = split_tasks(records, config.test_fraction, seed)
    cache = (lambda mode: cache_path(out, mode)) if out is not None else (lambda mode: None)  # noqa: E731
    base = cached_positions(model, records, spec, cache("head"), progress)  # the frozen model's states
    extra = {}
    if config.mode == "head":
        positions = base
        head = train_head(model, by_task(base, train_ids), spec, steps=config.steps, seed=seed)
    else:
        head, positions, extra = _train_lora(model, config, records, base, train_ids, test_ids, cache, progress)
    train, test = by_task(positions, train_ids), by_task(positions, test_ids)
    shuf = train_head(model, shuffled(train, spec, seed), spec, steps=config.steps, seed=seed)
    head.metadata.update(rollouts=str(rollouts), train_tasks=train_ids, test_tasks=test_ids,
                         n_regraded=sum(r["regraded"] for r in records))  # rewards the current grader changed

    def score(h: ReservedHead, p) -> dict:
        return summary(p.reward.numpy(), spec.p_correct(h.probs_from_hidden(model, p.hidden)).numpy())

    heldout = {"head": score(head, test), "shuffled": score(shuf, test)}
    if config.mode == "lora":  # the head-mode rows it started from, on the frozen model's states
        heldout["head mode (lora init)"] = score(extra.pop("init"), by_task(base, test_ids))
    result = TrainResult(head, config, str(rollouts), solve_rates(records), len(records), train_ids, test_ids,
                         heldout, {"head": score(head, train)}, **extra)
    if out is not None:
        result.save(out)
    return result


def _train_lora(model, config, records, base, train_ids, test_ids, cache, progress):
    """Mode lora: rows started from the head fit, adapters + rows trained, states re-read through them."""
    from metalens.introspect.lora import LoraAdapter, measure_kl, train_lora

    spec, seed = config.spec, config.seed
    init = train_head(model, by_task(base, train_ids), spec, steps=config.steps, seed=seed)
    train_recs = [r for r in records if r["task_index"] in set(train_ids)]
    test_recs = [r for r in records if r["task_index"] in set(test_ids)]
    head, peft_model, history = train_lora(model, train_recs, spec, steps=config.lora_steps, seed=seed, init=init,
                                          progress=progress)
    try:
        kl = measure_kl(model, peft_model, test_recs, head)
        adapter = LoraAdapter.from_peft(peft_model)
        if cache("lora") is not None:
            cache("lora").unlink(missing_ok=True)  # states of an earlier adapter are stale
        positions = cached_positions(model, records, spec, cache("lora"), progress)  # the adapted model's states
    finally:
        peft_model.unload()  # leave `model` as it was given (adapters removed, not merged)
    return head, positions, {"init": init, "kl_normal_vocab_heldout": kl, "lora_history": history, "adapter": adapter}

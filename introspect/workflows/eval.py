"""`run_eval`: held-out calibration of a trained head vs a probe, verbal confidence and shuffled labels."""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import torch

from metalens.introspect.evaluation.crossval import cross_validate
from metalens.introspect.evaluation.evaluate import FRACTIONS, evaluate_head
from metalens.introspect.evaluation.metrics import require_finite, summary
from metalens.introspect.heads.features import by_task, cached_positions
from metalens.introspect.rollouts.splits import problem_units
from metalens.introspect.rollouts.store import load_rollouts
from metalens.introspect.workflows.common import adapted, load_result, same_store, write_results
from metalens.introspect.workflows.train import TrainResult, as_trained, config_dict
from metalens.introspect.evaluation.tables import eval_sections


@dataclass
class EvalConfig:
    """Settings of `run_eval`: which train run (a `TrainResult`, or the folder `run_train` wrote) and which
    baselines."""

    train: object  # TrainResult, or its folder (its `head/` folder is accepted too)
    rollouts: str | Path | None = None  # default: the head's own (its held-out split); another store: all of it
    fractions: tuple[float, ...] = FRACTIONS  # prefix fractions scored (0: at the prompt, 1: last token)
    verbal: bool = True  # also ask the model whether its partial answer is right
    cv: int = 0  # >= 2: also k-fold cross-validation by question over all rollouts
    n_shuffles: int = 3  # shuffled-label heads in the null baseline
    seed: int = 0

    def __post_init__(self):
        self.fractions = tuple(self.fractions)  # JSON-ready, equal after load
        if not isinstance(self.train, TrainResult):
            self.train = str(self.train)
        self.rollouts = None if self.rollouts is None else str(self.rollouts)
        if self.cv == 1 or self.cv < 0:
            raise ValueError(f"cv={self.cv}: use 0 (no cross-validation) or k >= 2 folds.")


@dataclass
class EvalResult:
    """Per prefix fraction and over all held-out positions: the head against its baselines."""

    config: EvalConfig
    fractions: list[dict]  # per fraction: head/probe/shuffled(/verbal) summaries, head_vs_shuffled, length errors
    all_positions: dict
    reliability: dict  # str(fraction) -> reliability bins of the head's P(correct)
    n_test_samples: int
    n_train_positions: int
    n_test_positions: int
    cv: dict | None = None  # the same, out of fold over every question (config.cv >= 2)
    metadata: dict | None = None  # the head's
    transfer: str | None = None  # the other rollout store scored (all its questions), when not the head's own
    by_level: dict | None = None  # per difficulty level of the scored questions: the head's summary, all positions

    @property
    def heldout_auroc(self) -> float:
        """Held-out reward AUROC of the head over all positions."""
        return self.all_positions["head"]["auroc"]

    @property
    def gap(self) -> dict:
        """Head AUROC minus the shuffled-label heads', all positions: {gap, ci95, share_not_above, ...}."""
        return self.all_positions["head_vs_shuffled"]

    def data(self) -> dict:
        """What results.json holds."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("config", "metadata")}
        return {"config": config_dict(self.config), **data}

    def save(self, out: str | Path) -> Path:
        """Write results.json and report.html into `out`."""
        data = self.data()
        return write_results(out, "introspect eval", data, self.metadata or {}, eval_sections(data))

    @classmethod
    def load(cls, out: str | Path) -> "EvalResult":
        """The result `save` wrote into `out`."""
        return load_result(cls, EvalConfig, out)


def level_scores(model, head, test, records: list[dict]) -> dict:
    """The head's summary over all positions of the scored questions, per difficulty level."""
    level_of = {r["task_index"]: r["level"] for r in records}
    levels = torch.tensor([level_of[int(t)] for t in test.task])
    p = head.spec.p_correct(head.probs_from_hidden(model, test.hidden))
    return {int(lv): summary(test.reward[levels == lv].numpy(), p[levels == lv].numpy())
            for lv in levels.unique().tolist()}


def run_eval(model, config: EvalConfig, *, out: str | Path | None = None, progress: bool = True) -> EvalResult:
    """Score the head's reward and length predictions on its held-out questions (and k folds with `cv`).

    A `lora` head is read through its adapter, a `full` head through its weights, each put in for
    the run and removed after; `cv` is refused for them (they saw the questions the folds would
    hold out). `config.rollouts` naming another store than the head's (e.g. word problems for a
    head trained on arithmetic) scores every question of that store: a transfer evaluation, with
    the probe and shuffled heads still fitted on the head's own training questions. The head is
    checked against `model` before any work; an AUROC that would be NaN is an error.
    """
    trained = as_trained(config.train)
    head = trained.head
    head.check_fits(model)
    transfer = config.rollouts is not None and not same_store(config.rollouts, trained.rollouts_dir())
    if transfer and config.cv:
        raise ValueError(f"cv={config.cv} with other rollouts ({config.rollouts}) than the head's: cross-validation "
                         "refits heads on the store it scores, which is not transfer. Drop --cv.")
    records = trained.records(None, config.cv)
    with adapted(model, trained):
        positions = cached_positions(model, records, head.spec, trained.cache(), progress)
        train = by_task(positions, head.metadata["train_tasks"])
        if transfer:  # trained on one store (generator), scored on every question of another
            records = load_rollouts(config.rollouts)
            own = Path(out) / "positions.safetensors" if out is not None else None
            test = cached_positions(model, records, head.spec, own, progress)
        else:
            test = by_task(positions, head.metadata["test_tasks"])
        units = problem_units(records)
        scores = evaluate_head(model, head, train, test, records, config.fractions, verbal=config.verbal,
                               seed=config.seed, n_shuffles=config.n_shuffles, units=units)
        require_finite(scores["all_positions"]["head"]["auroc"], "The head's reward AUROC on the scored questions",
                       "every scored sample has the same reward; score more questions (--rollouts) or train "
                       "with a larger --test-fraction.")
        if config.cv:
            scores["cv"] = cross_validate(model, positions, head.spec, config.cv, config.fractions,
                                          n_shuffles=config.n_shuffles, seed=config.seed, start=head.start,
                                          levels={r["task_index"]: r["level"] for r in records}, units=units,
                                          progress=progress)
        scores["by_level"] = level_scores(model, head, test, records)
    scores["transfer"] = str(config.rollouts) if transfer else None
    result = EvalResult(config=config, metadata=head.metadata, **scores)
    if out is not None:
        result.save(out)
    return result

"""The `metalens sae train` / `sae eval` workflows: text in, a scored dictionary (results.json) out."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from metalens.artifact import read_json
from metalens.sae.corpus import read_corpus, split_texts, take_tokens
from metalens.sae.dictionary import SAE
from metalens.sae.formats import load_sae
from metalens.sae.metrics import SAEEval, evaluate_sae
from metalens.sae.train import SAETrainConfig, train_sae

RESULTS = "results.json"


@dataclass
class SAERunConfig:
    """Which text (None: Python's help paragraphs, see `metalens.sae.corpus`), how much, and how to score."""

    train: SAETrainConfig
    data: str | None = None
    tokens: int = 50_000  # training tokens (past BOS) taken from the training split, in file order
    eval_share: float = 0.1  # share of the texts held out for scoring
    max_eval_texts: int = 200  # of the held-out texts, the first this many are scored
    eval_batch_size: int = 8

    def check(self) -> None:
        """Refuse settings that cannot run (ValueError naming the field)."""
        self.train.check()
        for name in ("tokens", "max_eval_texts", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}.")
        if not 0 < self.eval_share < 1:
            raise ValueError(f"eval_share must be between 0 and 1 (exclusive), not {self.eval_share!r}.")


@dataclass
class SAERun:
    """A dictionary's scores on held-out text, with where the text came from and what the run cost."""

    eval: SAEEval
    data_source: str
    n_eval_texts: int
    wall_seconds: float
    sae: SAE | None = None
    training: dict = field(default_factory=dict)  # config, token and text counts, final loss (train runs)

    def to_dict(self) -> dict:
        """results.json's content."""
        return {**self.eval.to_dict(), "data_source": self.data_source, "n_eval_texts": self.n_eval_texts,
                "wall_seconds": self.wall_seconds, **({"training": self.training} if self.training else {})}

    def save(self, path) -> Path:
        """Write `path/results.json` (and `path/sae/` in SAELens' layout when the run holds its SAE)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if self.sae is not None:
            self.sae.save(path / "sae")
        (path / RESULTS).write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path) -> "SAERun":
        """Read what `save` wrote."""
        path = Path(path)
        record = read_json(path / RESULTS, "SAE run results")
        sae = load_sae(path / "sae") if (path / "sae").is_dir() else None
        scores = {k: record[k] for k in SAEEval.__dataclass_fields__}
        return cls(SAEEval(**scores), record["data_source"], record["n_eval_texts"], record["wall_seconds"], sae,
                   record.get("training", {}))


def held_out_texts(config: SAERunConfig) -> tuple[list[str], list[str], str]:
    """(training texts, scored held-out texts, source) of `config.data`, split with the training seed."""
    texts, source = read_corpus(config.data)
    train, held = split_texts(texts, config.eval_share, config.train.seed, source)
    return train, held[:config.max_eval_texts], source


def run_sae_training(model, config: SAERunConfig, *, out=None, progress: bool = True) -> SAERun:
    """Train a dictionary on `config.tokens` tokens of the training split and score it on the held-out split.

    out: checkpoints and the result go there; rerunning the same command resumes (see `train_sae`).
    """
    start = time.perf_counter()
    config.check()
    train_texts, held, source = held_out_texts(config)
    texts, n_tokens = take_tokens(model, train_texts, config.tokens, config.train.max_length)
    training = train_sae(model, texts, config.train, out=out, progress=progress)
    scores = evaluate_sae(model, training.sae, held, batch_size=config.eval_batch_size,
                          max_length=config.train.max_length, progress=progress)
    record = {"config": {**asdict(config.train), "tokens": config.tokens, "eval_share": config.eval_share},
              "n_train_texts": len(texts), "n_train_tokens": n_tokens, "final_loss": training.losses[-1],
              "model": model.name}
    result = SAERun(scores, source, len(held), round(time.perf_counter() - start, 3), training.sae, record)
    if out is not None:
        result.save(out)
    return result


def run_sae_evaluation(model, sae: SAE, config: SAERunConfig, *, out=None, progress: bool = True) -> SAERun:
    """Score `sae` on the held-out split of `config.data` (the texts `run_sae_training` held out with the same seed)."""
    start = time.perf_counter()
    config.check()
    _, held, source = held_out_texts(config)
    scores = evaluate_sae(model, sae, held, batch_size=config.eval_batch_size, max_length=config.train.max_length,
                          progress=progress)
    result = SAERun(scores, source, len(held), round(time.perf_counter() - start, 3))
    if out is not None:
        result.save(out)
    return result

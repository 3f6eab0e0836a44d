"""What the train, eval, sample and compare workflows share: a trained head's model put back for a
block, and results written as results.json + report.html and read again."""
from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path

from metalens.introspect.heads.head import ReservedHead
from metalens.artifact import read_json
from metalens.report import save_json, write_report


def train_dir(path) -> Path:
    """The folder of a train run: `path` itself, or its parent when `path` is the run's `head/` folder."""
    path = Path(path)
    if (path / "head.json").is_file() and not (path / "results.json").is_file():
        return path.parent
    return path


def store_path(rollouts, run_dir) -> str:
    """How a train run records its rollouts: relative to the run's folder (the two travel together),
    or absolute when the run is not saved."""
    rollouts = Path(rollouts).resolve()
    if run_dir is None:
        return str(rollouts)
    return os.path.relpath(rollouts, Path(run_dir).resolve())


def resolve_store(stored: str, run_dir) -> Path:
    """The rollout folder a train run recorded (`store_path`), wherever the command runs from. Runs saved
    before paths were stored relative to the run hold a path relative to the directory they ran in: used
    when nothing sits at the run-relative place."""
    stored = Path(stored)
    if stored.is_absolute() or run_dir is None:
        return stored
    beside = Path(run_dir) / stored
    return beside if (beside / "manifest.json").exists() or not (stored / "manifest.json").exists() else stored


def refuse_cv_of_trained_modes(head: ReservedHead, cv: int, where) -> None:
    """`cv` >= 2 on a `lora` or `full` head is refused: its adapter or weights were trained on most of
    every fold's test questions, so heads re-fitted per fold on its states would not be out of fold."""
    mode = head.metadata.get("mode", "head")
    if cv and mode in ("lora", "full"):
        what = "adapter was" if mode == "lora" else "weights were"
        raise ValueError(f"cv={cv} on the {mode} head {where}: its {what} trained on the questions the folds "
                         "would hold out, so the scores would not be out of fold. Drop --cv (the held-out split "
                         "is sound), or cross-validate a mode 'head' run.")


def adapted(model, trained):
    """The model a head was trained with, for the block: a `lora` run's adapter injected, a `full` run's
    weights loaded (the originals restored on exit); nothing for a `head` run. `trained`: a TrainResult."""
    mode = trained.head.metadata.get("mode")
    if mode == "full":
        from metalens.introspect.heads.full import weights_applied

        return weights_applied(model, trained.weights)
    if mode != "lora":
        return nullcontext()
    from metalens.introspect.heads.lora import adapter_applied

    return adapter_applied(model, trained.adapter)


def same_store(a, b) -> bool:
    """True when two rollout directories are the same place."""
    return Path(a).resolve() == Path(b).resolve()


def write_results(out, title: str, data: dict, metadata: dict, sections: list) -> Path:
    """Write `out/results.json` (data plus metadata) and `out/report.html`; returns `out`."""
    out = Path(out)
    save_json(out / "results.json", {**data, "metadata": metadata})
    write_report(out / "report.html", title, sections, metadata)
    return out


def read_results(out) -> dict:
    """The data of `out/results.json`, or FileNotFoundError saying which run writes it."""
    path = Path(out) / "results.json"
    if not path.exists():
        raise FileNotFoundError(f"No results.json in {out}: run the workflow with out= (or its CLI verb) first.")
    return read_json(path, "results file")


def load_result(cls, config_cls, out):
    """A result dataclass (`cls`, with a `config` field of `config_cls`) from its `out/results.json`."""
    from dataclasses import fields

    data = read_results(out)
    kept = {f.name: data.get(f.name) for f in fields(cls) if f.name != "config"}
    config = dict(data["config"])
    if "head" in config and "train" not in config:  # results written before configs named the train run
        head = Path(config.pop("head"))
        config["train"] = str(head.parent if head.name == "head" else head)
    return cls(config=config_cls(**config), **kept)

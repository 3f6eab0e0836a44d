"""Which arithmetic problems a model was post-trained on, so the atlas can ask it none of them.

A `metalens posttrain` folder (the final model or a checkpoint) records its config in
`metalens-checkpoint.json`; `metalens.analyses.posttrain.training_problems` replays the run's own
sampler from it, so the problems are known exactly without storing them. Anything else (a hub
name, a folder without that record, a loaded model) is listed as unchecked.
"""
from __future__ import annotations

import json
from pathlib import Path

from metalens.checkpoints import META_FILE

__all__ = ["posttrain_questions", "training_overlap"]


def posttrain_questions(model) -> dict | None:
    """For a posttrain folder: {"folder", "steps", "n_problems", "questions" (set of expressions)}; else None.

    Raises when the folder says it is a posttrain run but its config cannot be replayed (the items
    could then not be checked): fix the record or leave the model out.
    """
    from metalens.analyses.posttrain import PosttrainConfig, training_problems

    if not isinstance(model, (str, Path)) or not (Path(model) / META_FILE).is_file():
        return None
    file = Path(model) / META_FILE
    try:
        meta = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{file}:{err.lineno}: malformed JSON; the atlas reads it to keep the post-training "
                         "problems out of its items: restore the file or leave the model out.") from None
    if not isinstance(meta, dict) or "config" not in meta or "heldout" not in meta:
        return None  # a checkpoint of another kind: no training problems known
    try:
        saved = dict(meta["config"])
        cfg = PosttrainConfig(**{**saved, "levels": tuple(saved["levels"])})
        steps = int(meta.get("step", cfg.steps))
    except (TypeError, ValueError, KeyError) as err:
        raise ValueError(f"{file}: cannot replay the post-training problems from its config ({err}); the atlas "
                         "must keep them out of its items: restore the record or leave the model out.") from None
    problems = training_problems(cfg, steps)
    return {"folder": str(model), "steps": steps, "n_problems": len(problems),
            "questions": {p.question for p in problems}}


def training_overlap(models) -> tuple[set[str], dict]:
    """(every training expression of the posttrain folders among `models`, a JSON-ready record of the check)."""
    exclude, checked, unchecked = set(), [], []
    for m in models:
        found = posttrain_questions(m)
        if found is None:
            unchecked.append(m if isinstance(m, str) else getattr(m, "name", str(m)))
            continue
        exclude |= found["questions"]
        checked.append({k: found[k] for k in ("folder", "steps", "n_problems")} | {"n_distinct": len(found["questions"])})
    record = {"rule": "arithmetic items whose expression a post-training run drew are redrawn (sampler replayed "
                      "from the run's recorded config)",
              "posttrain_runs": checked, "not_posttrain_folders": unchecked, "n_training_expressions": len(exclude)}
    return exclude, record

"""`find_heads`: per-head scores for a task by several methods, saved as an artifact and a report."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor

from metalens.circuits.attribution import attribute_heads
from metalens.circuits.patching import patch_heads_exact
from metalens.circuits.tasks import Task, make_task
from metalens.artifact import read_artifact, write_artifact

METHODS = ("attribution", "ig", "exact")


@dataclass
class HeadScores:
    """{method: [n_layers, n_heads]} scores for one task and model, with timings and metadata."""

    scores: dict[str, Tensor]
    metadata: dict = field(default_factory=dict)

    def save(self, path) -> Path:
        return write_artifact(path, "head_scores", self.scores, self.metadata)

    @classmethod
    def load(cls, path) -> "HeadScores":
        return cls(*read_artifact(path, "head_scores", "point at a directory written by HeadScores.save."))


def spearman(a: Tensor, b: Tensor) -> float:
    """Spearman rank correlation of two score tensors (flattened)."""
    from scipy.stats import spearmanr

    return float(spearmanr(a.flatten().numpy(), b.flatten().numpy()).statistic)


def find_heads(model, task: Task, methods=METHODS, ig_steps: int = 5) -> HeadScores:
    """Score every head on `task` by each method; records seconds per method and rho vs exact."""
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"Unknown method(s) {sorted(unknown)}: use {METHODS}.")
    scores, seconds = {}, {}
    for method in methods:
        start = time.perf_counter()
        if method == "exact":
            scores[method] = patch_heads_exact(model, task)
        else:
            scores[method] = attribute_heads(model, task, method, steps=ig_steps)
        seconds[method] = time.perf_counter() - start
    rho = {m: spearman(scores[m], scores["exact"]) for m in scores if m != "exact" and "exact" in scores}
    meta = {**model.metadata(), "task": task.name, "metric": task.metric, "n_pairs": len(task),
            "ig_steps": ig_steps, "seconds": seconds, "spearman_vs_exact": rho}
    return HeadScores(scores, meta)


def heads_report(model, task: str | Task, out, n: int = 16, methods=METHODS, ig_steps: int = 5,
                 metric: str = "logit_diff", seed: int = 0, detect: bool = True) -> HeadScores:
    """Run `find_heads` (plus the head detectors) and write results.json, report.html and the scores."""
    from metalens.circuits.detect import KINDS, detect_heads, top_heads
    from metalens.circuits.plots import head_heatmap
    from metalens.report import save_json, write_report

    task = task if isinstance(task, Task) else make_task(task, model.tokenizer, n=n, seed=seed, metric=metric)
    result = find_heads(model, task, methods, ig_steps)
    ablation_rows = []
    if detect:
        from metalens.circuits.compare import ablation_effects

        for kind in KINDS:
            result.scores[f"detect_{kind}"] = detect_heads(model, kind)
        top = top_heads(result.scores["detect_induction"], 3)
        effects = ablation_effects(model, task, {"top3_induction": top})
        result.metadata["induction_ablation"] = effects
        ablation_rows = [{"zero-ablated": k, **{kk: str(vv) if kk == "heads" else vv for kk, vv in v.items()}}
                         for k, v in effects.items()]
    out = Path(out)
    result.save(out)
    rows = [{"method": m, "seconds": result.metadata["seconds"][m],
             "spearman vs exact": result.metadata["spearman_vs_exact"].get(m, float("nan")),
             "top heads (L, H)": str(top_heads(result.scores[m].abs(), 5))} for m in methods]
    sections = [("Summary", rows)]
    sections += [(f"{m} scores ({task.metric} change when patched from corrupted)", head_heatmap(result.scores[m], m))
                 for m in methods]
    if detect:
        sections.append(("Zero-ablating the top-3 induction heads vs random heads (this task)", ablation_rows))
        sections += [(f"{k} head detector", head_heatmap(result.scores[f"detect_{k}"], k, "Viridis", symmetric=False))
                     for k in KINDS]
    sections.append(("Task examples", [{"clean": c, "corrupted": x, "answer": a, "wrong": w} for c, x, a, w in
                                        list(zip(task.clean, task.corrupted, task.answers, task.wrong))[:5]]))
    save_json(out / "results.json", {"metadata": result.metadata, "scores": result.scores, "task": task.to_dict()})
    write_report(out / "report.html", f"Heads for task '{task.name}' on {model.name}", sections, result.metadata)
    return result

"""`run_heads`: per-head scores for a task by several methods, the head detectors, saved with a report."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from metalens.artifact import read_artifact, read_json, write_artifact
from metalens.circuits.attention import attention_heatmap, attention_patterns, parse_heads
from metalens.circuits.attribution import attribute_heads
from metalens.circuits.compare import ablation_effects
from metalens.circuits.curve_stats import curve_intervals
from metalens.circuits.detect import KINDS, detect_heads, top_heads
from metalens.circuits.faithfulness import KS, faithfulness_curves, method_edge_scores
from metalens.circuits.patching import patch_heads_exact
from metalens.precision import in_float32
from metalens.circuits.tasks import ContrastTask, make_task

METHODS = ("attribution", "ig", "exact")
ARTIFACT = "heads"  # heads.safetensors: scores.<method> and detect.<kind>, [n_layers, n_heads] each
FORMAT_VERSION = 1


def spearman(a: Tensor, b: Tensor) -> float:
    """Spearman rank correlation of two score tensors (flattened)."""
    from scipy.stats import spearmanr

    return float(spearmanr(a.flatten().numpy(), b.flatten().numpy()).statistic)


@dataclass
class HeadsConfig:
    """What `run_heads` scores: which task, how many pairs, which methods, and whether to run the detectors."""

    task: str | ContrastTask = "arithmetic"  # arithmetic, word, induction, factual, a pairs .jsonl, or a task
    n: int = 16  # prompt pairs (for a named task)
    methods: tuple[str, ...] = METHODS
    ig_steps: int = 5
    metric: str | None = None  # None: the task's own metric (prob_diff for greater-than, logit_diff otherwise)
    seed: int = 0
    detect: bool = True  # induction / previous-token / duplicate-token detectors, top-3 induction ablation
    show: tuple[str, ...] = ()  # heads ("L.H") whose attention on the first clean prompt the report shows
    faithfulness: bool = False  # MIB-style curves: each method's top-k% edge circuits run (see circuits.faithfulness)
    ks: tuple[float, ...] = KS  # percent of edges kept for the curves
    # pairs held out for the curves (drawn with `seed`): scores come from the other n - eval_n pairs,
    # curves and their intervals from these; None: everything on the same n pairs (the earlier design)
    eval_n: int | None = None

    def __post_init__(self):
        self.methods = tuple(self.methods)
        self.show = tuple(self.show)
        self.ks = tuple(float(k) for k in self.ks)
        if not self.ks or any(not 0 <= k <= 100 for k in self.ks):
            raise ValueError(f"ks must be percentages of edges kept in [0, 100], got {self.ks}.")
        for name, low in (("n", 1), ("ig_steps", 1), ("seed", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
        if self.eval_n is not None:
            if not isinstance(self.eval_n, int) or isinstance(self.eval_n, bool) or self.eval_n < 2:
                raise ValueError(f"eval_n must be an integer >= 2 (evaluation pairs), got {self.eval_n!r}.")
            # a .jsonl task keeps all its pairs whatever n says; `split_pairs` checks it once read
            n = len(self.task) if isinstance(self.task, ContrastTask) else self.n
            if not str(self.task).lower().endswith(".jsonl") and n - self.eval_n < 2:
                raise ValueError(f"eval_n={self.eval_n} leaves {n - self.eval_n} of {n} pairs to discover "
                                 "the circuits on; keep at least 2 on each side (raise n or lower eval_n).")
            if not self.faithfulness:
                raise ValueError("eval_n holds pairs out for the faithfulness curves: turn faithfulness on "
                                 "(--faithfulness) or drop eval_n.")
        unknown = set(self.methods) - set(METHODS)
        if unknown or not self.methods:
            raise ValueError(f"Unknown method(s) {sorted(unknown)}: use some of {METHODS}.")

    def to_dict(self) -> dict:
        """JSON-ready fields (a task object is recorded by name)."""
        task = self.task.name if isinstance(self.task, ContrastTask) else self.task
        return {**asdict(self), "task": task, "methods": list(self.methods), "show": list(self.show), "ks": list(self.ks)}


@dataclass
class HeadsResult:
    """Per-head scores of one task on one model: [n_layers, n_heads] per method and per detector."""

    scores: dict[str, Tensor]  # method -> metric change when the head is patched from corrupted
    seconds: dict[str, float]  # method -> wall time
    spearman_vs_exact: dict[str, float]  # method -> rank agreement with exact patching
    detectors: dict[str, Tensor]  # kind -> attention score in [0, 1]; {} without detectors
    induction_ablation: dict  # group -> task metric with it zero-ablated (top-3 induction heads vs random)
    task: ContrastTask
    config: HeadsConfig
    metadata: dict = field(default_factory=dict)
    attention: dict = field(default_factory=dict)  # {"tokens": [...], "patterns": {"L{l}.H{h}": [q][k]}} for `show`
    faithfulness: dict = field(default_factory=dict)  # {method: {"k", "faithfulness", "cpr", "cmd", ...}}
    split: dict = field(default_factory=dict)  # {"discover": [pair indices], "evaluate": [...]} with eval_n

    def top(self, method: str, k: int = 5) -> list[tuple[int, int]]:
        """The k heads with the largest |score| by `method` (or a detector kind), largest first."""
        scores = self.detectors[method] if method in self.detectors else self.scores[method].abs()
        return top_heads(scores, k)

    def save(self, path) -> Path:
        """Write heads.safetensors/heads.json, results.json and report.html into `path`; returns it."""
        from metalens.report import save_json

        path = Path(path)
        tensors = {**{f"scores.{m}": s for m, s in self.scores.items()},
                   **{f"detect.{k}": s for k, s in self.detectors.items()}}
        write_artifact(path, ARTIFACT, tensors, self.metadata, version=FORMAT_VERSION)
        save_json(path / "results.json", {
            "format": {"name": "heads-results", "version": FORMAT_VERSION},
            "config": self.config.to_dict(), "task": self.task.to_dict(), "metadata": self.metadata,
            "seconds": self.seconds, "spearman_vs_exact": self.spearman_vs_exact,
            "top_heads": {m: self.top(m) for m in [*self.scores, *self.detectors]},
            "induction_ablation": self.induction_ablation,
            "scores": self.scores, "detectors": self.detectors, "attention": self.attention,
            "faithfulness": self.faithfulness, "split": self.split,
        })
        _report(path / "report.html", self)
        return path

    @classmethod
    def load(cls, path) -> "HeadsResult":
        """The result `save` wrote into `path`."""
        path = Path(path)
        tensors, meta = read_artifact(path, ARTIFACT, "point at a directory written by run_heads or HeadsResult.save.",
                                      max_version=FORMAT_VERSION)
        meta.pop("format", None)
        results = read_json(path / "results.json", "heads results")
        scores = {k.removeprefix("scores."): v for k, v in tensors.items() if k.startswith("scores.")}
        detectors = {k.removeprefix("detect."): v for k, v in tensors.items() if k.startswith("detect.")}
        ablation = {g: {**row, "heads": [tuple(h) for h in row["heads"]]} if "heads" in row else row
                    for g, row in results["induction_ablation"].items()}
        return cls(scores, results["seconds"], results["spearman_vs_exact"], detectors, ablation,
                   ContrastTask.from_dict(results["task"]), HeadsConfig(**results["config"]), meta,
                   results.get("attention", {}), results.get("faithfulness", {}), results.get("split", {}))


def run_heads(model, config: HeadsConfig | None = None, *, out=None, progress: bool = True) -> HeadsResult:
    """Score every head on the config's task by each method (seconds and rho vs exact recorded), run
    the head detectors and a top-3 induction-head ablation (layer-matched random controls); with `out`,
    save results and report there. Computed in float32 whatever the model's dtype (restored after)."""
    with in_float32(model):
        return _run_heads(model, config, out, progress)


def _run_heads(model, config, out, progress) -> HeadsResult:
    cfg = config or HeadsConfig()
    show = parse_heads(cfg.show, model=model)  # refuse a bad head before the long work
    task = cfg.task if isinstance(cfg.task, ContrastTask) else make_task(cfg.task, model.tokenizer, n=cfg.n,
                                                                         seed=cfg.seed, metric=cfg.metric)
    discover, evaluate, split = split_pairs(task, cfg.eval_n, cfg.seed)
    scores, seconds = {}, {}
    for method in tqdm(cfg.methods, desc="heads", unit="method", disable=not progress):
        start = time.perf_counter()
        if method == "exact":
            scores[method] = patch_heads_exact(model, discover)
        else:
            scores[method] = attribute_heads(model, discover, method, steps=cfg.ig_steps)
        seconds[method] = time.perf_counter() - start
        if not torch.isfinite(scores[method]).all():
            raise ValueError(f"{method} scores on task '{task.name}' are not finite (NaN or inf): the model overflowed "
                             "or the task's metric is undefined on its pairs; check the pairs and the model's dtype.")
        if not scores[method].any():
            raise ValueError(f"Every head scores 0 by {method} on task '{task.name}': its clean and corrupted runs "
                             "do not differ in the metric; use pairs whose answers differ.")
    rho = {m: spearman(s, scores["exact"]) for m, s in scores.items() if m != "exact" and "exact" in scores}
    detectors, ablation = {}, {}
    if cfg.detect:
        detectors = {kind: detect_heads(model, kind) for kind in KINDS}
        ablation = ablation_effects(model, discover, {"top3_induction": top_heads(detectors["induction"], 3)})
    meta = {**model.metadata(), "task": task.name, "metric": task.metric, "n_pairs": len(task),
            "n_discover": len(discover), "n_evaluate": len(evaluate), "ig_steps": cfg.ig_steps,
            "compute_dtype": "float32"}
    result = HeadsResult(scores, seconds, rho, detectors, ablation, task, cfg, meta, split=split)
    if cfg.faithfulness:
        result.faithfulness = _faithfulness(model, discover, evaluate, cfg, scores, progress)
    if show:
        tokens, patterns = attention_patterns(model, task.clean[0], show)
        result.attention = {"tokens": tokens, "patterns": {f"L{l}.H{h}": p.tolist() for (l, h), p in patterns.items()}}
    if out is not None:
        result.save(out)
    return result


def split_pairs(task: ContrastTask, eval_n: int | None, seed: int) -> tuple[ContrastTask, ContrastTask, dict]:
    """(discovery pairs, evaluation pairs, {"discover": indices, "evaluate": indices}) of `task`.

    eval_n pairs drawn at random (numpy generator of `seed`) evaluate, the rest discover; eval_n
    None: both are the whole task and the split dict is empty (the earlier, same-pairs design).
    """
    if eval_n is None:
        return task, task, {}
    if len(task) - eval_n < 2:
        raise ValueError(f"Task '{task.name}' has {len(task)} pairs: eval_n={eval_n} leaves {len(task) - eval_n} to "
                         "discover the circuits on; keep at least 2 on each side (more pairs, or a lower --eval-n).")
    order = np.random.default_rng(seed).permutation(len(task))
    evaluate, discover = sorted(order[:eval_n].tolist()), sorted(order[eval_n:].tolist())
    return task.select(discover), task.select(evaluate), {"discover": discover, "evaluate": evaluate}


def _faithfulness(model, discover, evaluate, cfg: HeadsConfig, head_scores: dict, progress: bool) -> dict:
    """Each method's edge scores on the discovery pairs (exact: ranked by its upstream node's exact
    score), then its curves and their intervals on the evaluation pairs."""
    edges, seconds = {}, {}
    for method in tqdm(cfg.methods, desc="edge scores", unit="method", disable=not progress):
        start = time.perf_counter()
        edges[method] = method_edge_scores(model, discover, method, cfg.ig_steps, head_scores=head_scores.get("exact"))
        seconds[method] = time.perf_counter() - start
    start = time.perf_counter()
    curves = faithfulness_curves(model, evaluate, edges, cfg.ks)
    per_curve = (time.perf_counter() - start) / len(curves)
    intervals = curve_intervals(curves, seed=cfg.seed)
    return {m: {**c, **intervals[m], "seconds_scores": seconds[m], "seconds_curve": per_curve}
            for m, c in curves.items()}


def _mib_row(curve: dict) -> dict:
    """MIB's CPR and CMD with their intervals (absent in results saved before they existed)."""
    row = {}
    for name, key in (("CPR", "cpr_signed"), ("CMD", "cmd_abs")):
        ci = curve.get(f"{name.lower()}_interval")
        row[f"{name} (MIB)"] = curve.get(key) if ci is None else f"{curve[key]:.3f} [{ci['low']:.3f}, {ci['high']:.3f}]"
    return row


def _report(path: Path, result: HeadsResult) -> None:
    from metalens.circuits.plots import faithfulness_plot, head_heatmap
    from metalens.report import write_report

    task = result.task
    rows = [{"method": m, "seconds": result.seconds[m],
             "spearman vs exact": result.spearman_vs_exact.get(m, float("nan")),
             "top heads (L, H)": str(result.top(m))} for m in result.scores]
    sections = [("Summary", rows)]
    sections += [(f"{m} scores ({task.metric} change when patched from corrupted)", head_heatmap(s, m))
                 for m, s in result.scores.items()]
    if result.faithfulness:
        sections.append(("Faithfulness of edge circuits (top k % of edges kept, the rest patched to corrupted)",
                         faithfulness_plot(result.faithfulness)))
        if all("faithfulness_signed" in c for c in result.faithfulness.values()):
            for convention, what in (("signed", "MIB's CPR curve"), ("abs", "MIB's CMD curve")):
                sections.append((f"{what}: q/k/v counted as 3 edges, int(pct * n) kept",
                                 faithfulness_plot(result.faithfulness, convention=convention)))
        sections.append(("Faithfulness summary (MIB: CPR from the signed ranking, CMD from |score|, q/k/v counted "
                         "as 3 edges; earlier metalens convention: one edge per head input, |score|)",
                         [{"method": m, **_mib_row(c), "CPR (metalens)": c["cpr"], "CMD (metalens)": c["cmd"],
                           "edges (MIB count)": c.get("total_edges_mib"), "edges": c["total_edges"]}
                          for m, c in result.faithfulness.items()]))
    if result.induction_ablation:
        sections.append(("Zero-ablating the top-3 induction heads vs random heads (this task)",
                         [{"zero-ablated": k, **{kk: str(vv) if kk == "heads" else vv for kk, vv in v.items()}}
                          for k, v in result.induction_ablation.items()]))
    sections += [(f"{k} head detector", head_heatmap(s, k, "Viridis", symmetric=False))
                 for k, s in result.detectors.items()]
    for head, pattern in result.attention.get("patterns", {}).items():
        sections.append((f"Attention of {head} on the first clean prompt",
                         attention_heatmap(result.attention["tokens"], torch.tensor(pattern), head)))
    sections.append(("Task examples", [{"clean": c, "corrupted": x, "answer": a, "wrong": w} for c, x, a, w in
                                        list(zip(task.clean, task.corrupted, task.answers, task.wrong))[:5]]))
    write_report(path, f"Heads for task '{task.name}' on {result.metadata.get('model', '?')}", sections,
                 result.metadata)

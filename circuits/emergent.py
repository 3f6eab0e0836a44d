"""`run_emergent_heads`: base vs post-trained circuits (one checkpoint or a whole run), saved with a report.

The heads are picked on `n` prompt pairs and checked on `n_test` others (see `compare`).
Accuracy under ablation is measured on the held-out problems the post-training run evaluated
on, read from the metadata `metalens posttrain` saved beside its checkpoints, so the
comparison never grades the post-trained model on problems it trained on.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

import metalens
from metalens.artifact import read_artifact, write_artifact
from metalens.checkpoints import list_checkpoints, load_checkpoint, read_checkpoint_meta
from metalens.circuits.compare import (Comparison, recurrence_to_json, build_circuit, compare)
from metalens.circuits.tasks import make_task
from metalens.tasks.arithmetic import Problem

COHORT = "cohort"  # cohort.safetensors: scores [n_checkpoints, n_layers, n_heads]
FORMAT_VERSION = 1


@dataclass
class EmergentConfig:
    """How `run_emergent_heads` builds both circuits and checks the emergent heads by ablation."""

    task: str = "arithmetic"  # arithmetic, word, induction, factual or a pairs .jsonl
    n: int = 12  # prompt pairs that pick the circuits' heads
    n_test: int = 12  # other prompt pairs every check (ablation, scaling) runs on
    metric: str | None = None  # None: the task's own; logit_diff, logprob, prob_diff or kl (the emergent-heads paper's KL)
    n_boot: int = 10  # bootstrap resamples of the picking pairs for head recurrence (0: skip)
    n_edges: int = 100  # circuit = top-n EAP-IG edges, pruned to those reaching the logits
    ig_steps: int = 3
    n_problems: int = 20  # held-out problems for generated-answer accuracy under ablation (0: skip)
    max_emergent: int = 10  # emergent heads ablated together, strongest first
    n_random: int = 3  # random head groups of the same size, the ablation's control
    max_checkpoints: int = 4  # checkpoints in the cohort view when `post` is a run directory
    seed: int = 0
    device: str | None = None  # where models given by name are loaded
    heldout_from: str | None = None  # posttrain run or checkpoint dir holding the held-out split (default: `post`)


def cohorts(circuits: list[set], steps: list[int]) -> dict:
    """When each head first entered the circuit, and whether it is still there at the last checkpoint.

    Returns {'first_seen': {head: step}, 'survived': {head: bool}, 'counts': {first_step: [n in circuit per checkpoint]}}.
    """
    first, counts = {}, {}
    for step, heads in zip(steps, circuits):
        for h in heads:
            first.setdefault(h, step)
    for step0 in dict.fromkeys(first.values()):
        members = {h for h, s in first.items() if s == step0}
        counts[step0] = [len(members & c) for c in circuits]
    return {"first_seen": first, "survived": {h: h in circuits[-1] for h in first}, "counts": counts}


@dataclass
class EmergentResult:
    """The base-vs-post comparison, the held-out split it was checked on, and the cohort view over checkpoints."""

    comparison: Comparison
    config: EmergentConfig
    heldout: dict | None = None  # {"source", "seed", "levels", "n"} of the problems used; None: accuracy skipped
    cohort: dict | None = None  # `cohorts(...)` over the run's checkpoints
    checkpoint_steps: list[int] = field(default_factory=list)
    checkpoint_scores: Tensor | None = None  # [n_checkpoints, n_layers, n_heads] EAP-IG node scores
    curve: list[dict] = field(default_factory=list)  # step, heldout_token_acc of every checkpoint

    @property
    def emergent(self) -> list[tuple[int, int]]:
        """Heads in the post-trained circuit only, strongest first."""
        return self.comparison.emergent

    @property
    def lost(self) -> list[tuple[int, int]]:
        """Heads in the base circuit only."""
        return self.comparison.lost

    @property
    def shared(self) -> list[tuple[int, int]]:
        """Heads in both circuits."""
        return self.comparison.shared

    @property
    def ablation(self) -> dict:
        """Group ('none', 'emergent', 'base_circuit', 'random_i', 'random_mean') -> metrics with it zero-ablated."""
        return self.comparison.ablation

    @property
    def did(self) -> dict:
        """Difference in differences: damage of ablating the emergent heads in post minus in base."""
        return self.comparison.did

    @property
    def scaling(self) -> dict:
        """The post-trained model with the emergent heads scaled x1.3 and x0.5."""
        return self.comparison.scaling

    @property
    def recurrence(self) -> dict:
        """Fraction of bootstrap resamples of the picking pairs in which each head is emergent (lost)."""
        return self.comparison.recurrence

    @property
    def metadata(self) -> dict:
        """Both models, the task and the circuit sizes."""
        return self.comparison.metadata

    def save(self, path) -> Path:
        """Write comparison.*, cohort.* (with checkpoints), results.json and report.html into `path`."""
        from metalens.report import save_json

        path = Path(path)
        self.comparison.save(path)
        if self.checkpoint_scores is not None:
            write_artifact(path, COHORT, {"scores": self.checkpoint_scores}, {"steps": self.checkpoint_steps},
                           version=FORMAT_VERSION)
        save_json(path / "results.json", {
            "format": {"name": "emergent-results", "version": FORMAT_VERSION},
            "emergent": self.emergent, "lost": self.lost, "shared": self.shared, "ablation": self.ablation,
            "base_ablation": self.comparison.base_ablation, "difference_in_differences": self.did,
            "scaling": self.scaling, "recurrence": recurrence_to_json(self.recurrence),
            "config": asdict(self.config), "heldout": self.heldout, "metadata": self.metadata,
            "cohort": _cohort_to_json(self.cohort), "checkpoint_steps": self.checkpoint_steps, "curve": self.curve,
        })
        _report(path / "report.html", self)
        return path

    @classmethod
    def load(cls, path) -> "EmergentResult":
        """The result `save` wrote into `path`."""
        path = Path(path)
        comparison = Comparison.load(path)
        results = json.loads((path / "results.json").read_text())
        scores = None
        if (path / f"{COHORT}.json").exists():
            scores = read_artifact(path, COHORT, "point at a directory written by run_emergent_heads.",
                                   max_version=FORMAT_VERSION)[0]["scores"]
        return cls(comparison, EmergentConfig(**results["config"]), results["heldout"],
                   _cohort_from_json(results["cohort"]), results["checkpoint_steps"], scores, results["curve"])


def run_emergent_heads(base, post, config: EmergentConfig | None = None, *, out=None,
                       progress: bool = True) -> EmergentResult:
    """Compare the circuits of `base` and `post` on the config's task and check the emergent heads by ablation.

    base: a loaded model or a name. post: a loaded model, a checkpoint directory (full model or
    LoRA adapter), or a `metalens posttrain` run directory (its final model, plus a cohort view
    over up to `max_checkpoints` checkpoints). Generated-answer accuracy under ablation uses the
    held-out problems that run saved (`heldout_from` when `post` is a loaded model); without
    them it is skipped and `result.heldout` is None. With `out`, saves results and report there.
    """
    cfg = config or EmergentConfig()
    log = print if progress else (lambda *a, **k: None)
    base = base if isinstance(base, metalens.Model) else metalens.load_model(str(base), device=cfg.device)
    run_ckpts: list[Path] = []
    source = cfg.heldout_from
    if not isinstance(post, metalens.Model):
        post_path = Path(post)
        if not (post_path / "config.json").exists() and not (post_path / "adapter_config.json").exists():
            run_ckpts = [c for c in list_checkpoints(post_path) if not read_checkpoint_meta(c).get("merged")]
            final = post_path / "final"
            post_path = final if (final / "config.json").exists() else run_ckpts[-1]
        source = source or str(post_path)
        post = load_checkpoint(post_path, device=cfg.device)
    problems, heldout = heldout_problems(source, cfg.n_problems) if source and cfg.n_problems else (None, None)
    if cfg.n_problems and problems is None:
        log(f"[emergent-heads] no held-out split saved by `metalens posttrain` in {source or 'the loaded model'}: "
            "accuracy under ablation skipped (set heldout_from to a posttrain run).")
    task = make_task(cfg.task, base.tokenizer, n=cfg.n + cfg.n_test, seed=cfg.seed, metric=cfg.metric)
    n_pick = round(len(set(task.clean)) * cfg.n / (cfg.n + cfg.n_test))
    comparison = compare(base, post, task, n_edges=cfg.n_edges, steps=cfg.ig_steps, max_emergent=cfg.max_emergent,
                         problems=problems, n_random=cfg.n_random, seed=cfg.seed, n_pick=n_pick, n_boot=cfg.n_boot)
    comparison.metadata["heldout"] = heldout
    result = EmergentResult(comparison, cfg, heldout)
    if len(run_ckpts) > 1:
        del post  # one model at a time over the checkpoints
        picks = run_ckpts if len(run_ckpts) <= cfg.max_checkpoints else [
            run_ckpts[round(i * (len(run_ckpts) - 1) / (cfg.max_checkpoints - 1))] for i in range(cfg.max_checkpoints)]
        circuits, scores = [], []
        for ckpt in tqdm(picks, desc="checkpoints", disable=not progress):
            pick = task.select([i for i, c in enumerate(task.clean) if c in set(comparison.metadata["pick_prompts"])])
            circuit = build_circuit(load_checkpoint(ckpt, device=cfg.device), pick, cfg.n_edges, cfg.ig_steps)
            circuits.append(circuit.heads), scores.append(circuit.node_scores)
            result.checkpoint_steps.append(read_checkpoint_meta(ckpt).get("step", 0))
        result.checkpoint_scores = torch.stack(scores)
        result.cohort = cohorts(circuits, result.checkpoint_steps)
        result.curve = [{"step": read_checkpoint_meta(c).get("step"),
                         "heldout_token_acc": read_checkpoint_meta(c).get("heldout_token_acc")} for c in run_ckpts]
    if out is not None:
        result.save(out)
    return result


def heldout_problems(path, n: int | None = None) -> tuple[list[Problem] | None, dict | None]:
    """The first `n` held-out problems a posttrain run evaluated on, and where they came from.

    `path` is a posttrain run directory or one of its checkpoints; (None, None) when it saved none.
    """
    path = Path(path)
    saved = read_checkpoint_meta(path).get("heldout")
    if saved is None and (path / "results.json").exists():
        saved = json.loads((path / "results.json").read_text()).get("heldout")
    if not saved:
        return None, None
    problems = [Problem.from_dict(p) for p in saved["problems"][:n]]
    return problems, {"source": str(path), "seed": saved["seed"], "levels": saved["levels"], "n": len(problems)}


def _cohort_to_json(cohort: dict | None) -> dict | None:
    if cohort is None:
        return None
    return {"first_seen": [[l, h, s] for (l, h), s in cohort["first_seen"].items()],
            "survived": [[l, h, ok] for (l, h), ok in cohort["survived"].items()],
            "counts": {str(s): c for s, c in cohort["counts"].items()}}


def _cohort_from_json(data: dict | None) -> dict | None:
    if data is None:
        return None
    return {"first_seen": {(l, h): s for l, h, s in data["first_seen"]},
            "survived": {(l, h): ok for l, h, ok in data["survived"]},
            "counts": {int(s): c for s, c in data["counts"].items()}}


def _report(path: Path, result: EmergentResult) -> None:
    from metalens.circuits.plots import checkpoints_heatmap, cohort_plot, comparison_heatmap, head_heatmap
    from metalens.report import write_report

    cmp = result.comparison
    sections = [
        ("Reading", _reading(result)),
        ("Base-vs-post difference (E emergent, L lost, S shared)",
         comparison_heatmap(set(cmp.lost) | set(cmp.shared), set(cmp.emergent) | set(cmp.shared),
                            cmp.post_scores - cmp.base_scores)),
        ("Base node scores (EAP-IG)", head_heatmap(cmp.base_scores, "base")),
        ("Post node scores (EAP-IG)", head_heatmap(cmp.post_scores, "post")),
        ("Zero-ablation in the post-trained model (test pairs)", _table(cmp.ablation)),
        ("The same heads zero-ablated in the base model (test pairs)", _table(cmp.base_ablation)),
        ("Emergent heads scaled x1.3 / x0.5 in the post-trained model (test pairs)", _table(cmp.scaling)),
        ("Bootstrap recurrence over the picking pairs (fraction of resamples in which a head is emergent)",
         [{"head": str(h), "fraction": f} for h, f in (cmp.recurrence or {}).get("emergent", {}).items()]),
    ]
    if result.cohort is not None:
        sections += [("Head activity over checkpoints", checkpoints_heatmap(result.checkpoint_scores,
                                                                             result.checkpoint_steps)),
                     ("Cohorts", cohort_plot(result.cohort["counts"], result.checkpoint_steps, result.curve))]
    m = cmp.metadata
    write_report(path, f"Emergent heads: {m['base']['model']} vs {m['post']['model']}", sections, m)


def _table(rows: dict) -> list[dict]:
    def cell(k, v):
        if k == "heads":
            return str(v)
        if isinstance(v, dict) and "mean_diff" in v:
            return f"{v['mean_diff']:+.3f} [{v['low']:+.3f}, {v['high']:+.3f}] p={v['p']:.3g}"
        return v
    return [{"group": k, **{kk: cell(kk, vv) for kk, vv in v.items() if kk not in ("per_pair", "correct")}}
            for k, v in rows.items()]


def _fmt_test(t: dict) -> str:
    return f"{t['mean_diff']:+.3f} [{t['low']:+.3f}, {t['high']:+.3f}] (p = {t['p']:.3g}, n = {t['n']})"


def _reading(result: EmergentResult) -> str:
    r, m = result.comparison, result.comparison.metadata
    text = (f"Circuits: top {m['n_edges']} EAP-IG edges ({m['ig_steps']} steps) on {m.get('n_pick', '?')} '{m['task']}' "
            f"pairs (metric {m['metric']}), pruned to edges reaching the logits; every check runs on "
            f"{m.get('n_test', '?')} other pairs. Base circuit: {m['base_circuit_size']} heads; post: "
            f"{m['post_circuit_size']} heads. Emergent: {r.emergent}. Lost: {r.lost}. Shared: {r.shared}.")
    a = r.ablation
    if a:
        def fmt(k):
            v = a.get(k, {})
            return (f"{k}: metric {v.get('task_metric', float('nan')):.3f}, answer top-1 {v.get('answer_top1', float('nan')):.2f}"
                    + (f", accuracy {v['accuracy']:.2f}" if "accuracy" in v else "")
                    + (f" [{v['accuracy_low']:.2f}, {v['accuracy_high']:.2f}]" if "accuracy_low" in v else ""))
        text += "\n\nZero-ablation in the post-trained model: " + "; ".join(fmt(k) for k in ("none", "emergent", "base_circuit", "random_mean"))
    if r.did:
        text += ("\n\nDifference in differences (damage of ablating the emergent heads in post minus in base, "
                 f"per test pair): metric {_fmt_test(r.did['metric'])}")
        if "accuracy" in r.did:
            text += f"; accuracy {_fmt_test(r.did['accuracy'])}"
        text += ". Random controls are layer-matched (same layers as the emergent heads)."
    if r.scaling:
        text += "\n\nScaling the emergent heads (paired change vs none): " + "; ".join(
            f"{k}: {_fmt_test(v['change'])}" for k, v in r.scaling.items() if k != "none")
    if r.recurrence:
        rec = r.recurrence["emergent"]
        text += (f"\n\nRecurrence over {r.recurrence['n_boot']} bootstrap resamples of the picking pairs: "
                 + ", ".join(f"L{l}.H{h} {rec.get((l, h), 0.0):.2f}" for l, h in r.emergent))
    h = result.heldout
    text += (f"\n\nAccuracy on {h['n']} held-out problems (seed {h['seed']}, levels {h['levels']}) saved by the "
             f"post-training run in {h['source']}." if h else
             "\n\nNo held-out split from a post-training run: accuracy under ablation was not measured.")
    return text

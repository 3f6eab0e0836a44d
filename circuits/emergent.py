"""`run_emergent_heads`: base vs post-trained circuits (one checkpoint or a whole run), saved with a report.

The heads are picked on `n` prompt pairs and checked on `n_test` others (see `compare`).
Accuracy under ablation is measured on the held-out problems the post-training run evaluated
on, read from the metadata `metalens posttrain` saved beside its checkpoints, so the
comparison never grades the post-trained model on problems it trained on.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

import metalens
from metalens.artifact import read_artifact, read_json, write_artifact
from metalens.checkpoints import list_checkpoints, load_checkpoint, read_checkpoint_meta
from metalens.circuits.cohorts import cohort_from_json, cohort_to_json, cohorts, head_cohorts
from metalens.circuits.compare import Comparison, build_circuit, compare, recurrence_to_json
from metalens.circuits.own_pairs import model_divergence, own_solution_task
from metalens.circuits.tasks import ContrastTask, make_task
from metalens.tasks.arithmetic import Problem, make_problems

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
    max_checkpoints: int = 4  # checkpoints in the cohort view when `post` is a run directory (0: every one)
    seed: int = 0
    device: str | None = None  # where models given by name are loaded
    heldout_from: str | None = None  # posttrain run or checkpoint dir holding the held-out split (default: `post`)
    pairs: str = "task"  # "task": `task`'s templated pairs; "own": the models' own solution openings (own_pairs)
    own_tokens: int = 8  # pairs="own": tokens of each solution opening

    def __post_init__(self):
        for name, low in (("n", 1), ("n_test", 1), ("n_boot", 0), ("n_edges", 1), ("ig_steps", 1), ("n_problems", 0),
                          ("max_emergent", 1), ("n_random", 0), ("max_checkpoints", 0), ("seed", 0), ("own_tokens", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
        if self.pairs not in ("task", "own"):
            raise ValueError(f"Unknown pairs '{self.pairs}': use 'task' (the task's templated pairs) or 'own' "
                             "(the models' own solution openings).")


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
    checkpoint_circuits: list[list[tuple[int, int]]] = field(default_factory=list)  # circuit heads per checkpoint

    @property
    def emergent_cohorts(self) -> list[dict]:
        """The final model's emergent heads with the step they entered the circuit and their fate ([] without checkpoints)."""
        return head_cohorts(self.cohort, self.emergent) if self.cohort is not None else []

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
            "cohort": cohort_to_json(self.cohort), "checkpoint_steps": self.checkpoint_steps, "curve": self.curve,
            "checkpoint_circuits": [[list(h) for h in c] for c in self.checkpoint_circuits],
            "emergent_cohorts": self.emergent_cohorts,
        })
        _report(path / "report.html", self)
        return path

    @classmethod
    def load(cls, path) -> EmergentResult:
        """The result `save` wrote into `path`."""
        path = Path(path)
        comparison = Comparison.load(path)
        results = read_json(path / "results.json", "emergent-heads results")
        scores = None
        if (path / f"{COHORT}.json").exists():
            scores = read_artifact(path, COHORT, "point at a directory written by run_emergent_heads.",
                                   max_version=FORMAT_VERSION)[0]["scores"]
        return cls(comparison, EmergentConfig(**results["config"]), results["heldout"],
                   cohort_from_json(results["cohort"]), results["checkpoint_steps"], scores, results["curve"],
                   [[tuple(h) for h in c] for c in results.get("checkpoint_circuits", [])])


def picking_pairs(task, cfg: EmergentConfig) -> int:
    """How many of `task`'s distinct pairs pick the heads (the rest test them): cfg.n's share of n + n_test."""
    return round(len(set(task.clean)) * cfg.n / (cfg.n + cfg.n_test))


def run_emergent_heads(base, post, config: EmergentConfig | None = None, *, out=None,
                       progress: bool = True) -> EmergentResult:
    """Compare the circuits of `base` and `post` on the config's task and check the emergent heads by ablation.

    base: a loaded model or a name. post: a loaded model, a checkpoint directory (full model or
    LoRA adapter), or a `metalens posttrain` run directory (its final model, plus a cohort view
    over up to `max_checkpoints` checkpoints, 0: all, every circuit traced on the final comparison's
    picking pairs). `pairs="own"` builds the pairs from both models' own greedy solution openings
    (`own_pairs.own_solution_task`, kl by default) instead of `task`. Generated-answer accuracy under ablation uses the
    held-out problems that run saved (`heldout_from` when `post` is a loaded model); without
    them it is skipped and `result.heldout` is None. With `out`, saves results and report there.
    """
    cfg = config or EmergentConfig()
    log = print if progress else (lambda *a, **k: None)
    run_ckpts: list[Path] = []
    source = cfg.heldout_from
    if not isinstance(post, metalens.Model):
        post_path = Path(post)
        if not (post_path / "config.json").exists() and not (post_path / "adapter_config.json").exists():
            if not post_path.is_dir():
                raise ValueError(f"post {post_path} is not a folder: give a checkpoint folder (full model or LoRA "
                                 "adapter) or a `metalens posttrain` run folder.")
            run_ckpts = [c for c in list_checkpoints(post_path) if not read_checkpoint_meta(c).get("merged")]
            final = post_path / "final"
            if not (final / "config.json").exists() and not run_ckpts:
                raise ValueError(f"{post_path} holds no model (config.json or adapter_config.json) and no checkpoints "
                                 "of a `metalens posttrain` run: point --post at one of those.")
            post_path = final if (final / "config.json").exists() else run_ckpts[-1]
        source = source or str(post_path)
    # the post folder is checked above before either model loads
    base = base if isinstance(base, metalens.Model) else metalens.load_model(str(base), device=cfg.device)
    if not isinstance(post, metalens.Model):
        post = load_checkpoint(post_path, device=cfg.device)
    problems, heldout = heldout_problems(source, cfg.n_problems) if source and cfg.n_problems else (None, None)
    if cfg.n_problems and problems is None:
        log(f"[emergent-heads] no held-out split saved by `metalens posttrain` in {source or 'the loaded model'}: "
            "accuracy under ablation skipped (set heldout_from to a posttrain run).")
    pairs_meta = None
    if cfg.pairs == "own":
        every_heldout = heldout_problems(source)[0] if source else None  # none of them may become a pair
        task, pairs_meta = _own_task(base, post, cfg, every_heldout, heldout)
    else:
        task = make_task(cfg.task, base.tokenizer, n=cfg.n + cfg.n_test, seed=cfg.seed, metric=cfg.metric)
    n_pick = picking_pairs(task, cfg)
    comparison = compare(base, post, task, n_edges=cfg.n_edges, steps=cfg.ig_steps, max_emergent=cfg.max_emergent,
                         problems=problems, n_random=cfg.n_random, seed=cfg.seed, n_pick=n_pick, n_boot=cfg.n_boot)
    comparison.metadata["heldout"] = heldout
    comparison.metadata["pairs"] = pairs_meta or {"source": "task", "task": task.name}
    result = EmergentResult(comparison, cfg, heldout)
    if len(run_ckpts) > 1:
        del post  # one model at a time over the checkpoints
        picks = checkpoint_picks(run_ckpts, cfg.max_checkpoints)
        pick = task.select([i for i, c in enumerate(task.clean) if c in set(comparison.metadata["pick_prompts"])])
        circuits, scores = [], []
        for ckpt in tqdm(picks, desc="checkpoints", disable=not progress):
            circuit = build_circuit(load_checkpoint(ckpt, device=cfg.device), pick, cfg.n_edges, cfg.ig_steps)
            circuits.append(circuit.heads), scores.append(circuit.node_scores)
            result.checkpoint_steps.append(read_checkpoint_meta(ckpt).get("step", 0))
        result.checkpoint_scores = torch.stack(scores)
        result.checkpoint_circuits = [sorted(c) for c in circuits]
        result.cohort = cohorts(circuits, result.checkpoint_steps)
        result.curve = [{k: read_checkpoint_meta(c).get(k) for k in ("step", "heldout_token_acc", "accuracy", "low", "high")}
                        for c in run_ckpts]
    if out is not None:
        result.save(out)
    return result


def checkpoint_picks(ckpts: list, max_checkpoints: int) -> list:
    """`max_checkpoints` checkpoints spread evenly over `ckpts`, first and last included (0, or enough: all)."""
    if not max_checkpoints or len(ckpts) <= max_checkpoints:
        return list(ckpts)
    if max_checkpoints == 1:
        return [ckpts[-1]]
    return [ckpts[round(i * (len(ckpts) - 1) / (max_checkpoints - 1))] for i in range(max_checkpoints)]


def problem_pool(n: int, levels, seed: int) -> list[Problem]:
    """Up to `n` distinct problems cycling through `levels`, halving `n` until the levels hold that many
    (level 1, one-digit sums, has only 81)."""
    while True:
        try:
            return make_problems(n, levels=tuple(levels), seed=seed)
        except ValueError:
            if n <= 1:
                raise
            n //= 2


def _own_task(base, post, cfg: EmergentConfig, heldout_list, heldout: dict | None):
    """n + n_test own-solution pairs on problems outside the held-out split, and their metadata.

    Problems are drawn in growing rounds until enough pairs survive (identical or too short
    openings are dropped), at most 32 problems per pair asked for.
    """
    need = cfg.n + cfg.n_test
    levels = tuple(heldout["levels"]) if heldout else (1, 2, 3)
    skip = {p.question for p in heldout_list or []}
    pool = [p for p in problem_pool(32 * need + len(skip), levels, cfg.seed + 1) if p.question not in skip]
    fields: dict[str, list] = {"clean": [], "corrupted": [], "answers": [], "wrong": []}
    used, size = 0, 2 * need
    while len(fields["clean"]) < need and used < len(pool):
        chunk, used, size = pool[used : used + size], used + size, size * 2
        try:
            part = own_solution_task(base, post, chunk, n_tokens=cfg.own_tokens, metric=cfg.metric or "kl")
        except ValueError:
            continue
        for k in fields:
            fields[k] += getattr(part, k)
    if not fields["clean"]:
        raise ValueError(f"No own-solution pairs from {used} problems: base and post open their solutions alike.")
    task = ContrastTask("own-solutions", metric=cfg.metric or "kl", **fields).subset(need)
    if len(task) < need:
        warnings.warn(f"Only {len(task)} of {need} own-solution pairs from {used} problems.", stacklevel=3)
    divergence = model_divergence(post, base, task)
    meta = {"source": "own", "n_tokens": cfg.own_tokens, "n_pairs": len(task), "n_problems_tried": min(used, len(pool)),
            "kl_reference": "the traced model's own next-token distribution on the clean (post-trained) opening",
            "divergence_post_base": float(divergence.mean())}
    return task, meta


def heldout_problems(path, n: int | None = None) -> tuple[list[Problem] | None, dict | None]:
    """The first `n` held-out problems a posttrain run evaluated on, and where they came from.

    `path` is a posttrain run directory or one of its checkpoints; (None, None) when it saved none.
    """
    path = Path(path)
    saved = read_checkpoint_meta(path).get("heldout")
    if saved is None and (path / "results.json").exists():
        saved = read_json(path / "results.json", "emergent-heads results").get("heldout")
    if not saved:
        return None, None
    problems = [Problem.from_dict(p) for p in saved["problems"][:n]]
    return problems, {"source": str(path), "seed": saved["seed"], "levels": saved["levels"], "n": len(problems)}


def _report(path: Path, result: EmergentResult) -> None:
    from metalens.circuits.cohorts import membership_heatmap
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
        if result.checkpoint_circuits:
            sections.append(("Circuit membership over checkpoints (heads grouped by entry step and fate)",
                             membership_heatmap([set(c) for c in result.checkpoint_circuits], result.checkpoint_steps,
                                                result.cohort, marked=result.emergent)))
            sections.append(("Emergent heads of the final model and their cohorts", result.emergent_cohorts))
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
            mde = (v.get("mde") or {}).get("value")
            return (f"{v['mean_diff']:+.3f} [{v['low']:+.3f}, {v['high']:+.3f}] p={v['p']:.3g}"
                    + (f" mde={mde:.3g}" if mde is not None else ""))
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
    if m.get("pairs", {}).get("source") == "own":
        text += (f"\n\nPairs from the models' own greedy solutions: clean = problem + the post-trained model's first "
                 f"{m['pairs']['n_tokens']} tokens (at most), corrupted = problem + the base model's, cut to equal length; "
                 f"identical openings dropped. KL reference: {m['pairs']['kl_reference']}. Mean KL(post || base) of "
                 f"the next token after the clean opening: {m['pairs']['divergence_post_base']:.3f}.")
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

"""The three pipelines behind `metalens introspect train|eval|sample`, each writing results + report."""
from __future__ import annotations

import json
import random
from contextlib import nullcontext
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from metalens.report import save_json, write_report
from metalens.introspect.bins import BinSpec
from metalens.introspect.crossval import cross_validate, out_of_fold_pools
from metalens.introspect.evaluate import FRACTIONS, evaluate_head
from metalens.introspect.features import Positions, rollout_positions
from metalens.introspect.figures import pareto_figure
from metalens.introspect.head import ReservedHead
from metalens.introspect.tables import eval_sections
from metalens.introspect.live import live_runs
from metalens.introspect.metrics import summary
from metalens.introspect.rollouts import arithmetic_tasks, generate_rollouts, load_rollouts, solve_rates
from metalens.introspect.sampler import build_pools, pareto
from metalens.introspect.train import shuffled, train_head


def split_tasks(records: list[dict], test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, test) task indices: whole problems are held out, never single samples."""
    ids = sorted(r["task_index"] for r in records)
    random.Random(seed).shuffle(ids)
    n_test = max(1, round(test_fraction * len(ids)))
    return sorted(ids[n_test:]), sorted(ids[:n_test])


def _positions(model, records, spec, cache: Path | None, progress: bool = True) -> Positions:
    """All rollout positions, cached next to the head so eval/sample need no second pass."""
    if cache is not None and cache.exists():
        pos = Positions(**load_file(cache))
        n_tokens = sum(len(c) for r in records for c in r["completions"] if c)
        if len(pos.bin) == n_tokens:
            return pos  # else the cache belongs to other rollouts: recompute
    pos = rollout_positions(model, records, spec, progress=progress)
    if cache is not None:
        save_file({k: getattr(pos, k).contiguous() for k in pos.__dataclass_fields__}, cache)
    return pos


def _by_task(pos: Positions, records: list[dict], tasks: list[int]):
    keep = torch.isin(pos.task, torch.tensor(tasks))
    return pos.select(keep), [r for r in records if r["task_index"] in set(tasks)]


def introspect_train(model, out, *, rollouts=None, tasks=None, n_tasks: int = 80, levels=(1, 2, 3, 4),
                     n_samples: int = 6, max_new_tokens: int = 40, temperature: float = 1.0, mode: str = "head",
                     spec: BinSpec | None = None, steps: int = 100, lora_steps: int = 20,
                     test_fraction: float = 0.3, seed: int = 0, progress: bool = False) -> dict:
    """Generate (or resume) rollouts, train the head in `mode` ('head' or 'lora'), save it to out/head."""
    if mode not in ("head", "lora"):
        raise ValueError(f"Unknown mode '{mode}': use 'head' (reserved rows only) or 'lora'.")
    out, spec = Path(out), spec or BinSpec()
    out.mkdir(parents=True, exist_ok=True)
    # A finished store the user named is reused as it is; otherwise generate_rollouts resumes the
    # store, and refuses one written with other settings instead of silently training on it.
    given = rollouts is not None and _complete(Path(rollouts))
    rollouts = Path(rollouts) if rollouts else out / "rollouts"
    if not given:
        tasks = tasks or arithmetic_tasks(n_tasks, levels, seed)
        generate_rollouts(model, tasks, rollouts, n_samples, max_new_tokens, temperature, seed, progress=progress)
    records = load_rollouts(rollouts)
    train_ids, test_ids = split_tasks(records, test_fraction, seed)
    results = {"mode": mode, "rollouts": str(rollouts), "solve_rates": solve_rates(records),
               "n_tasks": len(records), "train_tasks": train_ids, "test_tasks": test_ids, "spec": spec.to_dict()}
    if mode == "head":
        pos = _positions(model, records, spec, _cache_path(out, "head"))
        (train, _), (test, _) = _by_task(pos, records, train_ids), _by_task(pos, records, test_ids)
        head = train_head(model, train, spec, steps=steps, seed=seed)
        shuf = train_head(model, shuffled(train, spec, seed), spec, steps=steps, seed=seed)
    else:
        from metalens.introspect.lora import measure_kl, train_lora

        train_recs = [r for r in records if r["task_index"] in set(train_ids)]
        test_recs = [r for r in records if r["task_index"] in set(test_ids)]
        base = _positions(model, records, spec, _cache_path(out, "head"))  # the frozen model's states
        init = train_head(model, _by_task(base, records, train_ids)[0], spec, steps=steps, seed=seed)
        head, peft_model, history = train_lora(model, train_recs, spec, steps=lora_steps, seed=seed, init=init,
                                              progress=progress)
        try:
            results["kl_normal_vocab_heldout"] = measure_kl(model, peft_model, test_recs, head)
            results["lora_history"] = history
            peft_model.save_pretrained(out / "adapter")
            _cache_path(out, "lora").unlink(missing_ok=True)  # states of an earlier adapter are stale
            pos = _positions(model, records, spec, _cache_path(out, "lora"))  # the adapted model's states
        finally:
            peft_model.unload()  # leave `model` as it was given (adapters removed, not merged)
        (train, _), (test, _) = _by_task(pos, records, train_ids), _by_task(pos, records, test_ids)
        shuf = train_head(model, shuffled(train, spec, seed), spec, steps=steps, seed=seed)
    head.metadata.update(rollouts=str(rollouts), train_tasks=train_ids, test_tasks=test_ids)
    head.save(out / "head")
    p_correct = lambda h, p: spec.p_correct(h.probs_from_hidden(p.hidden)).numpy()  # noqa: E731
    results["heldout_all_positions"] = {"head": summary(test.reward.numpy(), p_correct(head, test)),
                                        "shuffled": summary(test.reward.numpy(), p_correct(shuf, test))}
    results["train_all_positions"] = {"head": summary(train.reward.numpy(), p_correct(head, train))}
    if mode == "lora":  # the head-mode rows it started from, on the frozen model's states
        base_test = _by_task(base, records, test_ids)[0]
        results["heldout_all_positions"]["head mode (lora init)"] = summary(base_test.reward.numpy(),
                                                                            p_correct(init, base_test))
    _write(out, "introspect train", results, head.metadata, [
        ("What was trained", f"Mode '{mode}': {spec.n_bins} reserved tokens from id {head.start} "
                             f"({spec.n_rewards} reward states x {spec.n_lengths} remaining-length bins)."),
        ("Solve rate per level", [{"level": k, "solve_rate": v} for k, v in results["solve_rates"].items()]),
        ("Held-out reward AUROC (all positions)",
         [{"predictor": k, **v} for k, v in results["heldout_all_positions"].items()]),
    ])
    return results


def _complete(rollouts: Path) -> bool:
    manifest = rollouts / "manifest.json"
    return manifest.exists() and bool(json.loads(manifest.read_text()).get("complete"))


def _cache_path(out: Path, mode: str) -> Path:
    """Hidden states cached next to the head; `lora` heads read the adapted model's states."""
    return out / ("positions.safetensors" if mode == "head" else f"positions_{mode}.safetensors")


def _load(out_head, rollouts):
    head = ReservedHead.load(out_head)
    records = load_rollouts(rollouts or head.metadata["rollouts"])
    return head, records, _cache_path(Path(out_head).parent, head.metadata.get("mode", "head"))


def _adapted(model, head: ReservedHead, head_dir):
    """The LoRA adapters a `lora` head was trained with, injected for the block (else nothing)."""
    if head.metadata.get("mode") != "lora":
        return nullcontext()
    from metalens.introspect.lora import adapter_applied

    return adapter_applied(model, Path(head_dir).parent / "adapter")


def introspect_eval(model, head_dir, out, *, rollouts=None, fractions=FRACTIONS, verbal: bool = True,
                    seed: int = 0, cv: int = 0, n_shuffles: int = 3, progress: bool = False) -> dict:
    """Held-out calibration of the head vs probe, verbal confidence and shuffled labels.

    With `cv` >= 2, also `cv`-fold cross-validation by problem over all rollouts (results["cv"]).
    """
    head, records, cache = _load(head_dir, rollouts)
    with _adapted(model, head, head_dir):
        pos = _positions(model, records, head.spec, cache)
        train, _ = _by_task(pos, records, head.metadata["train_tasks"])
        test, _ = _by_task(pos, records, head.metadata["test_tasks"])
        results = evaluate_head(model, head, train, test, records, fractions, verbal=verbal, seed=seed,
                                n_shuffles=n_shuffles)
        if cv:
            results["cv"] = cross_validate(model, pos, head.spec, cv, fractions, n_shuffles=n_shuffles, seed=seed,
                                           start=head.start, levels={r["task_index"]: r["level"] for r in records},
                                           progress=progress)
    sections = eval_sections(results)
    _write(Path(out), "introspect eval", results, head.metadata, sections)
    return results


def introspect_sample(model, head_dir, out, *, rollouts=None, alphas=None, beta: float = 0.0,
                      every: int = 4, live: int = 0, live_alphas=(0.003, 0.01), cv: int = 0, seed: int = 0) -> dict:
    """Adaptive sampler vs majority voting and best-of-N on held-out problems: the Pareto curve.

    With `live` > 0, the sampler also generates for real on the first `live` held-out problems
    at each of `live_alphas` (results["live"]: accuracy, tokens, decode steps, seconds).
    With `cv` >= 2, the same comparison on every problem, each read by a head trained without
    its fold (results["cv"]): more problems, tighter intervals.
    """
    head, records, cache = _load(head_dir, rollouts)
    with _adapted(model, head, head_dir):
        pos = _positions(model, records, head.spec, cache)
        test, _ = _by_task(pos, records, head.metadata["test_tasks"])
        results = pareto(build_pools(records, test, head), alphas, beta, every)
        sections = [
            ("Accuracy vs tokens (held-out problems)", pareto_figure(results)),
            ("Adaptive sampler vs majority voting at the same mean tokens", results["matched"]),
            ("Paired per problem: adaptive vs majority@N with N the smallest pool spending at least as many tokens",
             [r for r in results["paired"] if r.get("majority_n")]),
            ("How it was measured", "Pools of fully generated samples are replayed: the sampler's decisions use "
                                    "only the head read on prefixes, and a pruned sample costs the tokens it had."),
        ]
        if cv:
            results["cv"] = pareto(out_of_fold_pools(model, pos, records, head.spec, cv, seed=seed, start=head.start),
                                   alphas, beta, every)
            results["cv"]["k"] = cv
            sections += [(f"Accuracy vs tokens, all {results['cv']['n_tasks']} problems ({cv}-fold heads)",
                          pareto_figure(results["cv"])),
                         (f"{cv}-fold, paired per problem: adaptive vs majority@N spending at least as many tokens",
                          [r for r in results["cv"]["paired"] if r.get("majority_n")])]
        if live:
            results["live"] = live_runs(model, head, records, head.metadata["test_tasks"][:live], live_alphas, beta,
                                    every, seed)
            sections.append(("Live adaptive generation on held-out problems", results["live"]))
    _write(Path(out), "introspect sample", results, head.metadata, sections)
    return results


def _write(out: Path, title: str, results: dict, metadata: dict, sections: list) -> None:
    save_json(out / "results.json", {**results, "metadata": metadata})
    write_report(out / "report.html", title, sections, metadata)


def demo(model=None, out="runs/introspect/demo", n_tasks: int = 16, n_samples: int = 4) -> dict:
    """A small end-to-end run (rollouts, head, eval, sampler) on gemma-3-270m; about 2 CPU minutes.

    Too few problems for trustworthy numbers: it shows the pipeline, not a result.
    """
    import metalens

    model = model or metalens.load_model("gemma-3-270m")
    out = Path(out)
    # Level 1 at low temperature: gemma-3-270m solves ~20 % of it, so both rewards occur.
    train = introspect_train(model, out, n_tasks=n_tasks, levels=(1,), n_samples=n_samples,
                             max_new_tokens=24, temperature=0.3, steps=100, test_fraction=0.5)
    evaluation = introspect_eval(model, out / "head", out / "eval", fractions=(0.0, 0.5, 1.0), verbal=False)
    sampling = introspect_sample(model, out / "head", out / "sample")
    return {"solve_rates": train["solve_rates"], "heldout": train["heldout_all_positions"],
            "fractions": evaluation["fractions"], "matched": sampling["matched"]}

"""The three pipelines behind `metalens introspect train|eval|sample`, each writing results + report."""
from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from metalens.report import save_json, write_report
from probes.introspect.bins import BinSpec
from probes.introspect.evaluate import FRACTIONS, evaluate_head
from probes.introspect.features import Positions, rollout_positions
from probes.introspect.figures import auroc_figure, pareto_figure, reliability_figure
from probes.introspect.head import ReservedHead
from probes.introspect.metrics import summary
from probes.introspect.rollouts import arithmetic_tasks, generate_rollouts, load_rollouts, solve_rates
from probes.introspect.sampler import build_pools, pareto
from probes.introspect.train import shuffled, train_head


def split_tasks(records: list[dict], test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, test) task indices: whole problems are held out, never single samples."""
    ids = sorted(r["task_index"] for r in records)
    random.Random(seed).shuffle(ids)
    n_test = max(1, round(test_fraction * len(ids)))
    return sorted(ids[n_test:]), sorted(ids[:n_test])


def _positions(model, records, spec, cache: Path | None) -> Positions:
    """All rollout positions, cached next to the head so eval/sample need no second pass."""
    if cache is not None and cache.exists():
        pos = Positions(**load_file(cache))
        n_tokens = sum(len(c) for r in records for c in r["completions"] if c)
        if len(pos.bin) == n_tokens:
            return pos  # else the cache belongs to other rollouts: recompute
    pos = rollout_positions(model, records, spec)
    if cache is not None:
        save_file({k: getattr(pos, k).contiguous() for k in pos.__dataclass_fields__}, cache)
    return pos


def _by_task(pos: Positions, records: list[dict], tasks: list[int]):
    keep = torch.isin(pos.task, torch.tensor(tasks))
    return pos.select(keep), [r for r in records if r["task_index"] in set(tasks)]


def introspect_train(model, out, *, rollouts=None, tasks=None, n_tasks: int = 80, levels=(1, 2, 3, 4),
                     n_samples: int = 6, max_new_tokens: int = 40, temperature: float = 1.0, mode: str = "head",
                     spec: BinSpec | None = None, steps: int = 300, lora_steps: int = 20,
                     test_fraction: float = 0.3, seed: int = 0, progress: bool = False) -> dict:
    """Generate (or resume) rollouts, train the head in `mode` ('head' or 'lora'), save it to out/head."""
    if mode not in ("head", "lora"):
        raise ValueError(f"Unknown mode '{mode}': use 'head' (reserved rows only) or 'lora'.")
    out, spec = Path(out), spec or BinSpec()
    out.mkdir(parents=True, exist_ok=True)
    rollouts = Path(rollouts) if rollouts else out / "rollouts"
    if not (rollouts / "manifest.json").exists() or not json.loads((rollouts / "manifest.json").read_text())["complete"]:
        tasks = tasks or arithmetic_tasks(n_tasks, levels, seed)
        generate_rollouts(model, tasks, rollouts, n_samples, max_new_tokens, temperature, seed, progress=progress)
    records = load_rollouts(rollouts)
    train_ids, test_ids = split_tasks(records, test_fraction, seed)
    results = {"mode": mode, "rollouts": str(rollouts), "solve_rates": solve_rates(records),
               "n_tasks": len(records), "train_tasks": train_ids, "test_tasks": test_ids, "spec": spec.to_dict()}
    if mode == "head":
        pos = _positions(model, records, spec, out / "positions.safetensors")
        (train, _), (test, _) = _by_task(pos, records, train_ids), _by_task(pos, records, test_ids)
        head = train_head(model, train, spec, steps=steps, seed=seed)
        shuf = train_head(model, shuffled(train, spec, seed), spec, steps=steps, seed=seed)
    else:
        from probes.introspect.lora import measure_kl, train_lora

        train_recs = [r for r in records if r["task_index"] in set(train_ids)]
        test_recs = [r for r in records if r["task_index"] in set(test_ids)]
        head, peft_model, history = train_lora(model, train_recs, spec, steps=lora_steps, seed=seed)
        try:
            results["kl_normal_vocab_heldout"] = measure_kl(model, peft_model, test_recs, head)
            results["lora_history"] = history
            peft_model.save_pretrained(out / "adapter")
            pos = _positions(model, records, spec, None)  # the adapted model's hidden states
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
    _write(out, "introspect train", results, head.metadata, [
        ("What was trained", f"Mode '{mode}': {spec.n_bins} reserved tokens from id {head.start} "
                             f"({spec.n_rewards} reward states x {spec.n_lengths} remaining-length bins)."),
        ("Solve rate per level", [{"level": k, "solve_rate": v} for k, v in results["solve_rates"].items()]),
        ("Held-out reward AUROC (all positions)",
         [{"predictor": k, **v} for k, v in results["heldout_all_positions"].items()]),
    ])
    return results


def _load(out_head, rollouts):
    head = ReservedHead.load(out_head)
    records = load_rollouts(rollouts or head.metadata["rollouts"])
    cache = Path(out_head).parent / "positions.safetensors"
    return head, records, cache if head.metadata.get("mode") == "head" else None


def introspect_eval(model, head_dir, out, *, rollouts=None, fractions=FRACTIONS, verbal: bool = True,
                    seed: int = 0) -> dict:
    """Held-out calibration of the head vs probe, verbal confidence and shuffled labels."""
    head, records, cache = _load(head_dir, rollouts)
    pos = _positions(model, records, head.spec, cache)
    train, _ = _by_task(pos, records, head.metadata["train_tasks"])
    test, _ = _by_task(pos, records, head.metadata["test_tasks"])
    results = evaluate_head(model, head, train, test, records, fractions, verbal=verbal, seed=seed)
    table = [{"prefix": f["fraction"], **{f"{k} AUROC": f[k]["auroc"] for k in ("head", "probe", "shuffled", "verbal") if k in f},
              "head Brier": f["head"]["brier"], "head ECE": f["head"]["ece"], "length MAE": f["length_mae"],
              "length MAE (constant)": f["length_mae_constant"]} for f in results["fractions"]]
    _write(Path(out), "introspect eval", results, head.metadata, [
        ("Reward AUROC by prefix fraction", auroc_figure(results["fractions"])),
        ("Summary (held-out problems)", table),
        ("Reliability of the head's P(correct)", reliability_figure(results["reliability"])),
    ])
    return results


def introspect_sample(model, head_dir, out, *, rollouts=None, alphas=None, beta: float = 0.0,
                      every: int = 4) -> dict:
    """Adaptive sampler vs majority voting and best-of-N on held-out problems: the Pareto curve."""
    head, records, cache = _load(head_dir, rollouts)
    pos = _positions(model, records, head.spec, cache)
    test, _ = _by_task(pos, records, head.metadata["test_tasks"])
    results = pareto(build_pools(records, test, head), alphas, beta, every)
    _write(Path(out), "introspect sample", results, head.metadata, [
        ("Accuracy vs tokens (held-out problems)", pareto_figure(results)),
        ("Adaptive sampler vs majority voting at the same mean tokens", results["matched"]),
        ("How it was measured", "Pools of fully generated samples are replayed: the sampler's decisions use "
                                "only the head read on prefixes, and a pruned sample costs the tokens it had."),
    ])
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
                             max_new_tokens=24, temperature=0.3, steps=200, test_fraction=0.5)
    evaluation = introspect_eval(model, out / "head", out / "eval", fractions=(0.0, 0.5, 1.0), verbal=False)
    sampling = introspect_sample(model, out / "head", out / "sample")
    return {"solve_rates": train["solve_rates"], "heldout": train["heldout_all_positions"],
            "fractions": evaluation["fractions"], "matched": sampling["matched"]}

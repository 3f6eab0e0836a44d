"""`emergent_heads`: base vs post-trained circuits (one checkpoint or a whole run), written as a report."""
from __future__ import annotations

from pathlib import Path

import torch

from metalens.checkpoints import list_checkpoints, load_checkpoint, read_checkpoint_meta
from metalens.circuits.compare import Comparison, build_circuit, compare
from metalens.circuits.tasks import make_task


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


def emergent_heads(base_name: str, post_dir: str, out, task: str = "arithmetic", n: int = 12,
                   n_edges: int = 100, steps: int = 3, n_problems: int = 20, device=None, seed: int = 0,
                   max_checkpoints: int = 4) -> Comparison:
    """Compare `base_name` with the checkpoint at `post_dir` (a run directory: its last checkpoint,
    plus a cohort view over up to `max_checkpoints` of its checkpoints); writes results.json + report.html."""
    import metalens
    from metalens.circuits.plots import checkpoints_heatmap, cohort_plot, comparison_heatmap, head_heatmap
    from metalens.tasks.arithmetic import make_problems
    from metalens.report import save_json, write_report

    out = Path(out)
    base = metalens.load_model(base_name, device=device)
    run_ckpts = []
    post_path = Path(post_dir)
    if not (post_path / "config.json").exists() and not (post_path / "adapter_config.json").exists():
        run_ckpts = list_checkpoints(post_path)
        final = post_path / "final"
        post_path = final if (final / "config.json").exists() else run_ckpts[-1]
    post = load_checkpoint(post_path, device=device)
    the_task = make_task(task, base.tokenizer, n=n, seed=seed)
    problems = make_problems(n_problems, seed=seed + 1000) if n_problems else None  # posttrain's held-out seed
    result = compare(base, post, the_task, n_edges=n_edges, steps=steps, problems=problems, seed=seed)
    result.save(out)
    sections = [
        ("Reading", _reading(result)),
        ("Base-vs-post difference (E emergent, L lost, S shared)",
         comparison_heatmap(set(result.lost) | set(result.shared), set(result.emergent) | set(result.shared),
                            result.post_scores - result.base_scores)),
        ("Base node scores (EAP-IG)", head_heatmap(result.base_scores, "base")),
        ("Post node scores (EAP-IG)", head_heatmap(result.post_scores, "post")),
        ("Ablation check", [{"ablated": k, **{kk: (str(vv) if kk == "heads" else vv) for kk, vv in v.items()}}
                            for k, v in result.ablation.items()]),
    ]
    cohort = None
    if len(run_ckpts) > 1:
        del post
        picks = run_ckpts if len(run_ckpts) <= max_checkpoints else [
            run_ckpts[round(i * (len(run_ckpts) - 1) / (max_checkpoints - 1))] for i in range(max_checkpoints)]
        steps_, circs, scores = [], [], []
        for ck in picks:
            model = load_checkpoint(ck, device=device)
            c = build_circuit(model, the_task, n_edges, steps)
            steps_.append(read_checkpoint_meta(ck).get("step", 0)), circs.append(c.heads), scores.append(c.node_scores)
            del model
        cohort = cohorts(circs, steps_)
        curve = [{"step": read_checkpoint_meta(ck)["step"], "heldout_token_acc": read_checkpoint_meta(ck).get("heldout_token_acc")} for ck in run_ckpts]
        sections += [("Head activity over checkpoints", checkpoints_heatmap(torch.stack(scores), steps_)),
                     ("Cohorts", cohort_plot(cohort["counts"], steps_, curve))]
    save_json(out / "results.json", {"emergent": result.emergent, "lost": result.lost, "shared": result.shared,
                                     "ablation": result.ablation, "metadata": result.metadata,
                                     "cohort": {k: {str(h): v for h, v in d.items()} for k, d in cohort.items()} if cohort else None})
    write_report(out / "report.html", f"Emergent heads: {base_name} vs {post_dir}", sections, result.metadata)
    return result


def _reading(r: Comparison) -> str:
    m = r.metadata
    text = (f"Circuits: top {m['n_edges']} EAP-IG edges ({m['ig_steps']} steps) on {m['n_pairs']} '{m['task']}' pairs, "
            f"pruned to edges reaching the logits. Base circuit: {m['base_circuit_size']} heads; post: "
            f"{m['post_circuit_size']} heads. Emergent: {r.emergent}. Lost: {r.lost}. Shared: {r.shared}.")
    a = r.ablation
    if a:
        def fmt(k):
            v = a.get(k, {})
            return (f"{k}: metric {v.get('task_metric', float('nan')):.3f}, answer top-1 {v.get('answer_top1', float('nan')):.2f}"
                    + (f", accuracy {v['accuracy']:.2f}" if "accuracy" in v else ""))
        text += "\n\nZero-ablation in the post-trained model: " + "; ".join(fmt(k) for k in ("none", "emergent", "base_circuit", "random_mean"))
    return text

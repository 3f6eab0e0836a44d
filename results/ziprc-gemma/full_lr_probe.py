"""One AdamW step of mode `full` at several learning rates, read on training questions only.

Picks the peak learning rate of a `--mode full` run before the run, without touching its held-out
questions: from the head-mode fit of a train run (`DIR/head`, fitted on the training questions),
take one optimiser step (AdamW (0.9, 0.95), the gradient clipped to 1.0, the reserved-slice CE
only) on a batch A of training samples at each learning rate, and read the CE on A and on a second,
disjoint batch B of other training questions' samples. AdamW's first step moves every weight by
about lr whatever its gradient, so its safe size is a property of the model and the head, not of
the run's length.

    python results/ziprc-gemma/full_lr_probe.py --model gemma-3-270m --train runs/ziprc/head --out lr-probe.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

import metalens
from metalens.introspect import TrainResult
from metalens.introspect.heads import final_states, flatten, prefix_labels
from metalens.introspect.heads.full import load_parameters, response_batch, snapshot
from metalens.introspect.rollouts import split_tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--train", required=True, help="a `introspect train` output directory (mode head)")
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-8, 3e-8, 1e-7, 3e-7, 1e-6, 3e-6, 1e-5])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    model = metalens.load_model(args.model, device="cpu")
    trained = TrainResult.load(args.train)
    head = trained.head
    records = trained.records()
    train_ids, _ = split_tasks(records, trained.config.test_fraction, trained.config.seed)
    assert sorted(train_ids) == sorted(head.metadata["train_tasks"]), "the split differs from the head's"
    rows = [r for r in flatten(records) if r["task_index"] in set(train_ids)]
    gen = torch.Generator().manual_seed(args.seed)
    perm = torch.randperm(len(rows), generator=gen).tolist()
    batch_a = [rows[i] for i in perm[: args.batch_size]]
    tasks_a = {r["task_index"] for r in batch_a}
    batch_b = [rows[i] for i in perm if rows[i]["task_index"] not in tasks_a][: args.batch_size]
    reserved = head.token_ids

    def ce(batch, grad=False) -> torch.Tensor:
        ids, mask, where = response_batch(model, batch)
        bins = torch.cat([prefix_labels(len(r["completion"]), r["reward"], head.spec)["bin"] for r in batch])
        with torch.set_grad_enabled(grad):
            return F.cross_entropy(model.unembed(final_states(model, ids, mask)[where], reserved), bins)

    original = snapshot(model)
    head.install(model)
    start = snapshot(model)
    out = {"model": model.metadata(), "train": args.train, "batch_size": args.batch_size, "seed": args.seed,
           "ce_a_start": ce(batch_a).item(), "ce_b_start": ce(batch_b).item(), "steps": []}
    for lr in args.lrs:
        load_parameters(model, start)
        params = list(model.hf.parameters())
        for p in params:
            p.requires_grad_(True)
        ce(batch_a, grad=True).backward()
        norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=0.0).step()
        model.hf.zero_grad(set_to_none=True)
        row = {"lr": lr, "grad_norm": float(norm), "ce_a": ce(batch_a).item(), "ce_b": ce(batch_b).item()}
        out["steps"].append(row)
        print(json.dumps(row), flush=True)
    load_parameters(model, original)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"start CE A {out['ce_a_start']:.3f}, B {out['ce_b_start']:.3f}; wrote {args.out}")


if __name__ == "__main__":
    main()

"""Rebuild the head of a `--mode full` run from its saved weights and rescore it.

Before the fix in `full.train_full` (a copy of the trained rows), a CPU run saved as its head the
untrained reserved rows: the trained rows were a view of the embedding, overwritten when the
original parameters were restored. The saved `weights/` were right (the trained rows sit in the
embedding), so the head is re-read from them, saved, and the held-out and training scores of
results.json are recomputed on the run's cached trained-model states (`positions_full.safetensors`).

    python results/ziprc-gemma/rehead_full.py runs/ziprc/full [more run dirs]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import metalens
from metalens.introspect import FullWeights, ReservedHead, load_rollouts, weights_applied
from metalens.introspect.evaluation import summary
from metalens.introspect.heads import by_task, cached_positions
from metalens.introspect.heads.features import cache_path
from metalens.introspect.workflows.common import resolve_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="`introspect train --mode full` output directories")
    parser.add_argument("--model", default="gemma-3-270m")
    args = parser.parse_args()
    model = metalens.load_model(args.model, device="cpu")
    for run in map(Path, args.runs):
        data = json.loads((run / "results.json").read_text())
        if data["mode"] != "full":
            raise ValueError(f"{run} is a mode '{data['mode']}' run: only full runs are rebuilt.")
        head = ReservedHead.load(run / "head")
        records = load_rollouts(resolve_store(head.metadata["rollouts"], run))
        with weights_applied(model, FullWeights.load(run / "weights")):
            head.weight = ReservedHead.from_model(model, head.spec, head.start).weight.cpu()  # the trained rows
            positions = cached_positions(model, records, head.spec, cache_path(run, "full"))
        head.metadata["rows"] = "re-read from weights/ by results/ziprc-gemma/rehead_full.py"
        head.save(run / "head")

        def score(tasks: list[int]) -> dict:
            part = by_task(positions, tasks)
            return summary(part.reward.numpy(), head.spec.p_correct(head.probs_from_hidden(model, part.hidden)).numpy())

        old = data["heldout_all_positions"]["head"]["auroc"]
        data["heldout_all_positions"]["head"] = score(head.metadata["test_tasks"])
        data["train_all_positions"]["head"] = score(head.metadata["train_tasks"])
        # a second pass changes nothing and keeps the first pass's record
        data["reheaded"] = data.get("reheaded") or {"by": "results/ziprc-gemma/rehead_full.py", "heldout_auroc_before": old}
        (run / "results.json").write_text(json.dumps(data, indent=1))
        print(f"{run}: held-out AUROC {old:.3f} -> {data['heldout_all_positions']['head']['auroc']:.3f}, "
              f"training {data['train_all_positions']['head']['auroc']:.3f}")


if __name__ == "__main__":
    main()

"""Wall time of exact activation patching vs per-head attribution patching on the same prompts.

    python bench/circuits.py [--model gemma-3-270m|tiny] [--task arithmetic] [--n 8] [--repeats 5]

Attribution needs 2 forward passes + 1 forward/backward for all heads; exact patching needs
one forward pass per head (72 on gemma-3-270m), so the ratio should grow with the head count
(target: exact/attribution >= 10x on gemma-3-270m). The two arms are ABBA-interleaved over
`--repeats` and the ratio is paired within each repeat (bench/common.py); `--model tiny` is the
random 3-block test model, a smoke run.
"""
from __future__ import annotations

import statistics

from common import bench_parser, abba_times, bench_model, paired_ratio, write_json

from metalens.circuits import attribute_heads, make_task, patch_heads_exact
from metalens.circuits.heads import spearman


def main(argv=None) -> dict:
    """Run the bench; returns the timings, the paired ratio exact/attribution with its interval, and rho."""
    parser = bench_parser(__doc__)
    parser.add_argument("--task", default="arithmetic")
    parser.add_argument("--n", type=int, default=8, help="prompt pairs")
    parser.add_argument("--repeats", type=int, default=5, help="ABBA repeats (>= 2)")
    args = parser.parse_args(argv)
    model = bench_model(args.model, args.device, args.dtype)
    task = make_task(args.task, model.tokenizer, n=args.n)
    arms = {"exact": lambda: patch_heads_exact(model, task), "attribution": lambda: attribute_heads(model, task)}
    times = abba_times(arms, args.repeats, model.device)  # one warm-up call of each arm first
    ratio = paired_ratio(times["exact"], times["attribution"])
    rho = spearman(attribute_heads(model, task), patch_heads_exact(model, task))
    n_heads = model.n_layers * model.n_heads
    out = {"model": model.name, "device": str(model.device), "dtype": str(model.dtype), "task": args.task, "n_pairs": args.n, "heads": n_heads,
           "repeats": args.repeats, "exact_s": statistics.median(times["exact"]),
           "attribution_s": statistics.median(times["attribution"]), "seconds": times, "ratio": ratio.to_dict(),
           "spearman": rho}
    print(f"{model.name}, {n_heads} heads, {args.n} '{args.task}' pairs on {model.device}, {args.repeats} ABBA repeats: "
          f"exact patching {out['exact_s']:.2f} s, attribution patching {out['attribution_s']:.2f} s (medians); "
          f"exact/attribution = {ratio} (median [95% bootstrap interval]); Spearman rho {rho:.3f}")
    write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()

"""Speed of steered generation relative to plain `metalens.generate`, as paired ratios from one run.

    python bench/steer.py [--model gemma-3-270m|tiny] [--device cpu] [--batch 8] [--new 32] [--repeats 8] [--threads 1]

Arms: plain `metalens.generate`; steered through HF hooks (`metalens.steering.generate`, the
vector as an edit); steered and unsteered through nnsight's `generate`. Every arm generates
exactly --new greedy tokens per prompt (EOS masked), KV cache on, the same batch. Arms run back
to back in ABBA order; each steered arm's speed relative to plain is the median of per-repeat
ratios (plain seconds / arm seconds) with a bootstrap 95 % interval. Target: steered (HF hooks)
>= 0.95x plain. Also checks that both steered arms write the same tokens.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import abba_times, bench_model, generation_parser, paired_ratio, run_with_threads, write_json  # noqa: E402

import metalens  # noqa: E402
from metalens.steering import SteeringVector  # noqa: E402
from metalens.steering.generate import generate_ids, stop_ids  # noqa: E402

PROMPTS = ["The weather today is", "My favourite memory is", "Tell me about your morning.", "On my way home I saw",
           "The teacher walked into the classroom and", "A story about an old man:", "Every Sunday, my family",
           "Here is my opinion on modern music:"]
PLAIN = "plain generate"
STEERED_HF, STEERED_NN, PLAIN_NN = "steered (HF hooks)", "steered (nnsight)", "unsteered (nnsight)"
TARGET = 0.95


def main(argv=None) -> dict:
    args = generation_parser(__doc__, batch=8, repeats=8).parse_args(argv)
    return run_with_threads(args.threads, _run, args)


def _run(args) -> dict:
    model = bench_model(args.model, args.device, args.dtype)
    prompts = (PROMPTS * (args.batch // len(PROMPTS) + 1))[:args.batch]
    gen = torch.Generator().manual_seed(0)
    direction = torch.randn(model.d_model, generator=gen)
    vec = SteeringVector({model.n_layers // 2: direction}, model.name, model.d_model, revision=model.revision)
    eos = stop_ids(model)  # masked, so every row runs the full --new tokens
    fixed = dict(max_new_tokens=args.new, mask_ids=eos, batch_size=args.batch)
    steer = dict(strength=args.strength, chat=False, **fixed)
    arms = {
        PLAIN: lambda: metalens.generate(model, prompts, **fixed),
        STEERED_HF: lambda: generate_ids(model, prompts, vec, **steer),
        STEERED_NN: lambda: generate_ids(model, prompts, vec, backend="nnsight", **steer),
        PLAIN_NN: lambda: generate_ids(model, prompts, None, backend="nnsight", **steer),
    }
    times = abba_times(arms, args.repeats, model.device)  # warms up every arm first (nnsight builds envoys)

    plain_ids = metalens.generate(model, prompts, **fixed).ids
    hf_ids, nn_ids = arms[STEERED_HF](), arms[STEERED_NN]()
    n_tokens = args.batch * args.new
    median = {name: sorted(ts)[len(ts) // 2] for name, ts in times.items()}
    ratios = {name: paired_ratio(times[PLAIN], times[name]) for name in (STEERED_HF, STEERED_NN, PLAIN_NN)}
    nnsight_cost = paired_ratio(times[PLAIN_NN], times[STEERED_NN])  # the vector add alone, within nnsight

    print(f"model={model.name} device={model.device} dtype={model.dtype} batch={args.batch} new={args.new} "
          f"repeats={args.repeats} torch_threads={torch.get_num_threads()}")
    print(f"{'arm':22s} {'tokens/s':>10s} {'speed vs plain [95% CI]':>26s}")
    for name in arms:
        ratio = str(ratios[name]) if name in ratios else "1 (baseline)"
        print(f"{name:22s} {n_tokens / median[name]:10.1f} {ratio:>26s}")
    print(f"steered vs unsteered within nnsight: {nnsight_cost}")
    verdict = "met" if ratios[STEERED_HF].median >= TARGET else "NOT met"
    print(f"target: steered (HF hooks) >= {TARGET}x plain: {verdict} (median {ratios[STEERED_HF].median:.3f})")
    result = {
        "model": model.name, "device": str(model.device), "dtype": str(model.dtype), "batch": args.batch,
        "new_tokens": args.new, "repeats": args.repeats, "strength": args.strength,
        "torch_threads": torch.get_num_threads(),
        "tokens_per_s": {name: n_tokens / t for name, t in median.items()},
        "seconds": times,
        "paired_ratio": {name: r.to_dict() for name, r in ratios.items()},
        "nnsight_steering_ratio": nnsight_cost.to_dict(),
        "target": TARGET,
        "tokens_per_row": sorted({len(row) for row in [*plain_ids, *hf_ids, *nn_ids]}),
        "same_tokens_hf_nnsight": hf_ids == nn_ids,
        "steering_changed_tokens": hf_ids != plain_ids,
    }
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()

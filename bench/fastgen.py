"""Speed of the fast generation path (static KV cache, compiled decode step) against transformers' default
`generate`, and of fast steered against fast plain, as paired ratios from one run.

    python bench/fastgen.py [--model gemma-3-270m|tiny|random:llama-1b] [--device cuda] [--batch 16] [--new 32]
                            [--repeats 6] [--threads 1]

Arms: `metalens.generate` as it has always run (transformers' default `generate`: dynamic cache, eager
forward); `metalens.generate(..., fast=True)`; `metalens.steering.generate_ids(..., fast=True)` with a
random vector at the middle block. Every arm writes exactly --new greedy tokens per prompt (EOS masked),
the same batch, back to back in ABBA order after one warm-up call each (the fast arms' first call
compiles; its seconds are reported apart). Ratios are medians of per-repeat ratios with bootstrap 95 %
intervals. Targets (issue #30): fast >= 3x default at batch 16 on a GPU; fast steered >= 0.95x fast plain.
Also checks that the fast arms write the hook path's tokens (plain and steered).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import abba_times, bench_model, generation_parser, paired_ratio, run_with_threads, write_json  # noqa: E402
from steer import PROMPTS  # noqa: E402

import metalens  # noqa: E402
from metalens.steering import SteeringVector  # noqa: E402
from metalens.steering.generate import generate_ids, stop_ids  # noqa: E402

DEFAULT, FAST, FAST_STEERED = "default generate", "fast plain", "fast steered"
SPEEDUP, STEER_COST = "fast / default", "fast steered / fast plain"
TARGETS = {SPEEDUP: 3.0, STEER_COST: 0.95}


def main(argv=None) -> dict:
    args = generation_parser(__doc__, batch=16, repeats=6).parse_args(argv)
    return run_with_threads(args.threads, _run, args)


def _sync(model) -> None:
    if model.device.type == "cuda":
        torch.cuda.synchronize()


def _run(args) -> dict:
    model = bench_model(args.model, args.device, args.dtype)
    prompts = (PROMPTS * (args.batch // len(PROMPTS) + 1))[:args.batch]
    direction = torch.randn(model.d_model, generator=torch.Generator().manual_seed(0))
    vec = SteeringVector({model.n_layers // 2: direction}, model.name, model.d_model, revision=model.revision)
    fixed = dict(max_new_tokens=args.new, mask_ids=stop_ids(model), batch_size=args.batch)
    steer = dict(strength=args.strength, chat=False, **fixed)
    arms = {
        DEFAULT: lambda: metalens.generate(model, prompts, **fixed).ids,
        FAST: lambda: metalens.generate(model, prompts, fast=True, **fixed).ids,
        FAST_STEERED: lambda: generate_ids(model, prompts, vec, fast=True, **steer),
    }
    _sync(model)
    began = time.perf_counter()
    fast_ids = arms[FAST]()  # compiles the decode step
    _sync(model)
    compile_s = time.perf_counter() - began
    times = abba_times(arms, args.repeats, model.device)

    default_ids, steered_ids = arms[DEFAULT](), arms[FAST_STEERED]()
    hook_steered_ids = generate_ids(model, prompts, vec, **steer)
    n_tokens = args.batch * args.new
    median = {name: sorted(ts)[len(ts) // 2] for name, ts in times.items()}
    ratios = {SPEEDUP: paired_ratio(times[DEFAULT], times[FAST]), STEER_COST: paired_ratio(times[FAST], times[FAST_STEERED])}

    print(f"model={model.name} device={model.device} dtype={model.dtype} batch={args.batch} new={args.new} "
          f"repeats={args.repeats} torch_threads={torch.get_num_threads()} first fast call (compile) {compile_s:.1f} s")
    print(f"{'arm':18s} {'tokens/s':>10s}")
    for name in arms:
        print(f"{name:18s} {n_tokens / median[name]:10.1f}")
    for name, ratio in ratios.items():
        verdict = "met" if ratio.median >= TARGETS[name] else "NOT met"
        print(f"{name:26s} {ratio}   target >= {TARGETS[name]}: {verdict}")
    result = {
        "model": model.name, "device": str(model.device), "dtype": str(model.dtype), "batch": args.batch,
        "new_tokens": args.new, "repeats": args.repeats, "strength": args.strength,
        "torch_threads": torch.get_num_threads(), "compile_s": compile_s,
        "tokens_per_s": {name: n_tokens / t for name, t in median.items()},
        "seconds": times,
        "paired_ratio": {name: r.to_dict() for name, r in ratios.items()},
        "targets": TARGETS,
        "tokens_per_row": sorted({len(row) for row in [*fast_ids, *default_ids, *steered_ids]}),
        "same_tokens_fast_default": fast_ids == default_ids,
        "same_tokens_fast_hook_steered": steered_ids == hook_steered_ids,
        "steering_changed_tokens": steered_ids != fast_ids,
    }
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()

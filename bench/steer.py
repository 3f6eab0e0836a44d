"""Throughput of steered batched generation vs plain HF `generate`, measured in one run.

    python bench/steer.py [--model gemma-3-270m] [--batch 8] [--new 32] [--repeats 3] [--device cpu]

Every path generates exactly --new tokens per prompt (min_new_tokens = max_new_tokens), greedy,
KV cache on, the same left-padded batch; paths are timed round-robin and the best of --repeats
timings is kept for each.
"""
from __future__ import annotations

import argparse
import time
import warnings

import torch

import metalens
from metalens.steering import SteeringVector
from metalens.steering.generate import _left_padded, generate_ids

PROMPTS = ["The weather today is", "My favourite memory is", "Tell me about your morning.", "On my way home I saw",
           "The teacher walked into the classroom and", "A story about an old man:", "Every Sunday, my family",
           "Here is my opinion on modern music:"]


def _best_interleaved(paths: dict, repeats: int) -> dict[str, float]:
    """Best time of each path, timed round-robin so that load on the machine hits every path alike."""
    times = {name: [] for name in paths}
    for _ in range(repeats):
        for name, fn in paths.items():
            start = time.perf_counter()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    return {name: min(ts) for name, ts in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--device", default=None)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tiny", action="store_true", help="use a tiny random model (checks the script, not speed)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    if args.tiny:
        from metalens.testing import tiny_model

        model = tiny_model("gemma3", device=args.device or "cpu")
    else:
        model = metalens.load_model(args.model, device=args.device)
    prompts = (PROMPTS * (args.batch // len(PROMPTS) + 1))[:args.batch]
    gen = torch.Generator().manual_seed(0)
    vec = SteeringVector({model.n_layers // 2: torch.randn(model.d_model, generator=gen)}, model.name, model.d_model)
    fixed = dict(max_new_tokens=args.new, min_new_tokens=args.new)

    @torch.inference_mode()
    def plain():  # tokenizes too, as the steered paths do
        batch = _left_padded(model, prompts)
        model.hf.generate(**batch, do_sample=False, use_cache=True, pad_token_id=model.tokenizer.pad_token_id, **fixed)

    paths = {
        "plain HF generate": plain,
        "steered (HF hooks)": lambda: generate_ids(model, prompts, vec, strength=4.0, chat=False, **fixed),
        "steered (nnsight)": lambda: generate_ids(model, prompts, vec, strength=4.0, chat=False, backend="nnsight", **fixed),
        "unsteered (nnsight)": lambda: generate_ids(model, prompts, None, chat=False, backend="nnsight", **fixed),
    }
    for fn in paths.values():  # warm up (nnsight builds its envoys on first use)
        fn()
    n_tokens = args.batch * args.new
    rates = {name: n_tokens / t for name, t in _best_interleaved(paths, args.repeats).items()}
    print(f"{model.name} on {model.device}, batch {args.batch}, {args.new} new tokens, best of {args.repeats}")
    for name, rate in rates.items():
        print(f"  {name:22s} {rate:8.1f} tokens/s   ratio to plain {rate / rates['plain HF generate']:.3f}")


if __name__ == "__main__":
    main()

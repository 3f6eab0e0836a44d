"""Capture throughput: metalens vs plain HF forward, TransformerLens run_with_cache, nnsight trace.

    python bench/capture.py [--model gemma-3-270m|tiny] [--device cpu] [--batch 8] [--repeats 6]

Prints tokens/s of each method and its speed-up over (a), the plain HF forward over the same
batch: the median of per-repeat paired ratios (ABBA order) with a bootstrap 95 % interval, all
measured in this run, plus the peak extra memory of each call. Targets: capture at block 6 >= 5x,
at the last block >= 2.4x.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import bench_parser, abba_times, bench_model, paired_ratio, peak_extra_memory, write_json  # noqa: E402

import metalens  # noqa: E402
from metalens import sites  # noqa: E402

SENTENCE = "The quick brown fox jumps over the lazy dog while the farmer counts his sheep in the field. "


def main(argv=None) -> dict:
    parser = bench_parser(__doc__)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=128, help="tokens per text")
    parser.add_argument("--repeats", type=int, default=6)
    args = parser.parse_args(argv)

    if args.model == "tiny":
        from metalens.testing import tiny_model

        model = tiny_model("gemma3", n_layers=8, device=args.device or "cpu",
                           dtype=getattr(torch, args.dtype) if args.dtype else None)
    else:
        model = bench_model(args.model, args.device, args.dtype)
    texts = [SENTENCE * 8] * args.batch
    batch = model.tokenize(texts, max_length=args.tokens)
    n_tokens = int(batch["attention_mask"].sum())
    layer_index = min(6, model.n_layers - 1)
    mid, last = sites.resid_post(layer_index), sites.resid_post(model.n_layers - 1)
    bridge, lm = model.bridge, model.nnsight

    @torch.inference_mode()
    def hf_forward():
        model.hf(**batch, use_cache=False)

    def ours(site):
        return lambda: metalens.capture(model, texts, [site], positions="all", batch_size=args.batch,
                                        max_length=args.tokens, progress=False)

    @torch.inference_mode()
    def tl_cache():
        bridge.run_with_cache(batch["input_ids"], names_filter=[mid])

    @torch.inference_mode()
    def nnsight_trace():
        with lm.trace(batch["input_ids"]):
            lm.model.layers[layer_index].output.save()

    fns = {
        "(a) HF forward (full, with logits)": hf_forward,
        f"(b) metalens capture {mid}": ours(mid),
        f"(b') metalens capture {last}": ours(last),
        f"(c) TransformerLens run_with_cache {mid}": tl_cache,
        f"(d) nnsight trace {mid}": nnsight_trace,
    }
    times = abba_times(fns, args.repeats, model.device)
    base_name = "(a) HF forward (full, with logits)"
    print(f"model={model.name} device={model.device} dtype={model.dtype} batch={args.batch} "
          f"tokens/batch={n_tokens} repeats={args.repeats} torch_threads={torch.get_num_threads()}")
    print(f"{'method':58s} {'tokens/s':>10s} {'speed-up vs (a) [95% CI]':>26s} {'peak extra MiB':>15s}")
    rows = {}
    for name, fn in fns.items():
        mib = peak_extra_memory(fn, model.device) / 2**20
        ratio = paired_ratio(times[base_name], times[name])
        tokens_per_s = n_tokens / sorted(times[name])[len(times[name]) // 2]
        rows[name] = {"tokens_per_s": tokens_per_s, "speedup": ratio.to_dict(), "peak_extra_mib": mib}
        print(f"{name:58s} {tokens_per_s:10.0f} {str(ratio):>26s} {mib:15.0f}")
    result = {"model": model.name, "device": str(model.device), "dtype": str(model.dtype), "batch": args.batch,
              "tokens_per_batch": n_tokens, "repeats": args.repeats, "torch_threads": torch.get_num_threads(),
              "mid_site": mid, "last_site": last, "methods": rows,
              "targets": {"mid_speedup_min": 5.0, "last_speedup_min": 2.4}}
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()

"""Capture throughput: metalens vs plain HF forward, TransformerLens run_with_cache, nnsight trace.

    python bench/capture.py [--model gemma-3-270m|tiny] [--device cpu] [--batch 8] [--repeats 6]

Prints tokens/s of each method and its speed-up over (a), the plain HF forward over the same
batch: the median of per-repeat paired ratios (ABBA order) with a bootstrap 95 % interval, all
measured in this run, plus the peak extra memory of each call. Also in the same run:
- the limit of each capture depth: the same forward stopped after that block with no hook at all
  (`limits.first_blocks`), and capture's speed as a share of it (target >= 0.95 on the CPU, 0.9 on a GPU);
- every block's resid_post in one pass, kept on the device: metalens `run_with_cache` and nnsight's
  trace (the peers' anchor), each against (a) (target >= 0.9x);
- on a GPU, each arm's roofline: tokens/s at the card's peak FLOP/s or bandwidth for the work the arm
  needs (`limits.forward_work`).
Targets on the CPU for gemma-3-270m: capture at block 6 >= 5x, at the last block >= 2.4x.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import bench_parser, abba_times, bench_model, paired_ratio, peak_extra_memory, write_json  # noqa: E402
from limits import card_peaks, first_blocks, forward_work, roofline_tokens_per_s  # noqa: E402

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

    every = [sites.resid_post(layer) for layer in range(model.n_layers)]

    def cache_all():
        metalens.run_with_cache(model, batch["input_ids"], batch["attention_mask"], sites=every)

    @torch.inference_mode()
    def nnsight_all():
        with lm.trace(batch["input_ids"]):
            for layer in lm.model.layers:
                layer.output.save()

    def limit(n_blocks):
        @torch.inference_mode()
        def fn():
            with first_blocks(model, n_blocks) as base:
                base(**batch, use_cache=False)
        return fn

    seq = batch["input_ids"].shape[1]
    base_name = "(a) HF forward (full, with logits)"
    mid_name, last_name = f"(b) metalens capture {mid}", f"(b') metalens capture {last}"
    limit_mid, limit_last = f"(e) limit: forward to block {layer_index}, no hooks", \
        f"(e') limit: forward to block {model.n_layers - 1}, no hooks"
    arms = {  # name: (fn, the work its output needs: blocks run, logits)
        base_name: (hf_forward, (None, True)),
        mid_name: (ours(mid), (layer_index + 1, False)),
        last_name: (ours(last), (None, False)),
        f"(c) TransformerLens run_with_cache {mid}": (tl_cache, (layer_index + 1, False)),
        f"(d) nnsight trace {mid}": (nnsight_trace, (layer_index + 1, False)),
        limit_mid: (limit(layer_index + 1), (layer_index + 1, False)),
        limit_last: (limit(model.n_layers), (None, False)),
        "(f) metalens run_with_cache, every block's resid_post (on device)": (cache_all, (None, False)),
        "(g) nnsight trace, every block's output (on device)": (nnsight_all, (None, False)),
    }
    fns = {name: fn for name, (fn, _) in arms.items()}
    times = abba_times(fns, args.repeats, model.device)
    peaks = card_peaks(model.device)
    print(f"model={model.name} device={model.device} dtype={model.dtype} batch={args.batch} "
          f"tokens/batch={n_tokens} repeats={args.repeats} torch_threads={torch.get_num_threads()}"
          + (f" card={peaks['card']}" if peaks else ""))
    print(f"{'method':66s} {'tokens/s':>10s} {'speed-up vs (a) [95% CI]':>26s} {'peak extra MiB':>15s} "
          f"{'roofline tok/s':>15s}")
    rows = {}
    for name, (fn, (n_blocks, logits)) in arms.items():
        mib = peak_extra_memory(fn, model.device) / 2**20
        ratio = paired_ratio(times[base_name], times[name])
        tokens_per_s = n_tokens / sorted(times[name])[len(times[name]) // 2]
        work = forward_work(model, n_tokens, seq, n_blocks, logits)
        roof = roofline_tokens_per_s(work, n_tokens, peaks)
        rows[name] = {"tokens_per_s": tokens_per_s, "speedup": ratio.to_dict(), "peak_extra_mib": mib,
                      "work": work.to_dict(), "roofline_tokens_per_s": roof}
        print(f"{name:66s} {tokens_per_s:10.0f} {str(ratio):>26s} {mib:15.0f} "
              f"{'n/a' if roof is None else f'{roof:.0f}':>15s}")
    of_limit = {"mid": paired_ratio(times[limit_mid], times[mid_name]),
                "last": paired_ratio(times[limit_last], times[last_name])}
    for depth, ratio in of_limit.items():
        print(f"capture at the {depth} block as a share of its limit's speed: {ratio}")
    result = {"model": model.name, "device": str(model.device), "dtype": str(model.dtype), "batch": args.batch,
              "tokens_per_batch": n_tokens, "repeats": args.repeats, "torch_threads": torch.get_num_threads(),
              "card": peaks, "mid_site": mid, "last_site": last, "methods": rows,
              "capture_share_of_limit": {k: v.to_dict() for k, v in of_limit.items()},
              "targets": {"mid_speedup_min": 5.0, "last_speedup_min": 2.4,
                          "share_of_limit_min": 0.9 if model.device.type == "cuda" else 0.95,
                          "all_blocks_vs_forward_min": 0.9}}
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()

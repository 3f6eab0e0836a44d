"""Capture throughput: metalens vs plain HF forward, TransformerLens run_with_cache, nnsight trace.

    python bench/capture.py [--model gemma-3-270m] [--device cpu] [--batch 8] [--repeats 5]

Prints tokens/s of each method and its ratio to (a), the plain HF forward over the same
batch, all measured in this run, plus the peak extra memory of each call.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import interleaved_times, peak_extra_memory  # noqa: E402

import metalens  # noqa: E402

SENTENCE = "The quick brown fox jumps over the lazy dog while the farmer counts his sheep in the field. "


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--device", default=None)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=128, help="tokens per text")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    model = metalens.load_model(args.model, device=args.device)
    texts = [SENTENCE * 8] * args.batch
    batch = model.tokenize(texts, max_length=args.tokens)
    n_tokens = int(batch["attention_mask"].sum())
    mid = f"blocks.{min(6, model.n_layers - 1)}.hook_resid_post"
    last = f"blocks.{model.n_layers - 1}.hook_resid_post"
    bridge, lm = model.bridge, model.nnsight
    layer_index = int(mid.split(".")[1])

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
    times = interleaved_times(fns, args.repeats, model.device)
    base = times["(a) HF forward (full, with logits)"]
    print(f"model={model.name} device={model.device} dtype={model.dtype} batch={args.batch} "
          f"tokens/batch={n_tokens} repeats={args.repeats} torch_threads={torch.get_num_threads()}")
    print(f"{'method':58s} {'tokens/s':>10s} {'ratio to (a)':>12s} {'peak extra MiB':>15s}")
    for name, fn in fns.items():
        mib = peak_extra_memory(fn, model.device) / 2**20
        print(f"{name:58s} {n_tokens / times[name]:10.0f} {base / times[name]:12.2f} {mib:15.0f}")


if __name__ == "__main__":
    main()

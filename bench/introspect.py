"""Per-token latency of generation with the reserved-logit head read out at every step vs plain.

Both arms run the same sampling loop in the same process, interleaved in ABBA order (so neither
arm always runs second), with the reserved logits masked; the head arm also slices the K
reserved logits out of the logits the forward already computed and softmaxes them. Prints the
ratio of median per-token times and the median of per-repeat paired ratios. Target <= 1.01.

    python bench/introspect.py [--model gemma-3-270m] [--tokens 64] [--repeats 5]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


class _Never:
    def __call__(self, token_id: int) -> bool:
        return False


def main(argv=None) -> dict:
    import metalens
    from metalens.testing import tiny_model
    from metalens.introspect import ReservedHead, sample

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="gemma-3-270m", help="model name, or 'tiny' for a random tiny model")
    parser.add_argument("--device", default=None)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--head", default=None, help="a trained head directory (default: the untrained rows)")
    args = parser.parse_args(argv)
    model = tiny_model("gemma3") if args.model == "tiny" else metalens.load_model(args.model, device=args.device)
    head = ReservedHead.load(args.head) if args.head else ReservedHead.from_model(model)
    prompt = model.tokenizer("Q: What is 3 + 4 * 2?\nA:")["input_ids"]
    timings = {True: [], False: []}
    sample(model, prompt, args.batch, 4, temperature=0, head=head, stop=_Never())  # warm-up
    with head.applied(model):
        for repeat in range(args.repeats):
            for read in ((False, True) if repeat % 2 == 0 else (True, False)):  # ABBA: drift hits both arms
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                start = time.perf_counter()
                out = sample(model, prompt, args.batch, args.tokens, temperature=0, head=head, read_head=read,
                             stop=_Never())
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                timings[read].append((time.perf_counter() - start) / len(out.tokens[0]))
    plain, with_head = statistics.median(timings[False]), statistics.median(timings[True])
    paired = statistics.median(h / p for h, p in zip(timings[True], timings[False]))
    result = {"model": model.name, "device": str(model.device), "tokens": args.tokens, "batch": args.batch,
              "repeats": args.repeats, "plain_ms_per_token": plain * 1e3, "head_ms_per_token": with_head * 1e3,
              "ratio": with_head / plain, "paired_ratio_median": paired}
    print(f"{model.name} on {model.device}: plain {plain * 1e3:.2f} ms/token, with head readout "
          f"{with_head * 1e3:.2f} ms/token, ratio {with_head / plain:.4f}, median paired ratio {paired:.4f} "
          f"(target <= 1.01)")
    return result


if __name__ == "__main__":
    main()

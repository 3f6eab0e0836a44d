"""Per-token latency of generation with the reserved-logit head read out at every step vs plain decoding.

Both arms call `metalens.generate` on the same prompt, greedy, in the same process, timed in ABBA
order (bench/common.py). The plain arm is plain decoding: the model as loaded, no mask, no readout.
The head arm installs the head's rows for the call (`head.applied`: a copy of K rows), masks the
reserved ids out of sampling and reads the head from every step's logits (`HeadReadout`: a slice
of K logits the forward already computed, softmaxed; regrouped once at the end). Reports the
median per-repeat paired ratio head/plain of seconds per decoded token, with a bootstrap 95 %
interval over repeats. Target <= 1.01.

    python bench/introspect.py [--model gemma-3-270m|tiny] [--device cpu] [--tokens 64] [--batch 4] [--repeats 6]
                               [--head DIR/head] [--json PATH]
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import bench_parser, abba_times, bench_model, paired_ratio, write_json  # noqa: E402

TARGET = 1.01
PROMPT = "Q: What is 3 + 4 * 2?\nA:"


def main(argv=None) -> dict:
    """Time both arms, print one line, and return the measurements as a dict."""
    import metalens
    from metalens.introspect.heads import HeadReadout, ReservedHead

    parser = bench_parser(__doc__)
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per sample (fewer if EOS comes first)")
    parser.add_argument("--batch", type=int, default=4, help="samples decoded together")
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--head", default=None, help="a trained head directory (default: the untrained rows)")
    args = parser.parse_args(argv)
    model = bench_model(args.model, args.device, args.dtype)
    head = ReservedHead.load(args.head) if args.head else ReservedHead.from_model(model)
    prompt = model.tokenizer(PROMPT)["input_ids"]
    steps = {"plain": [], "head": []}  # decode steps of every call, warm-up included
    readings = []
    # Greedy: the batch is the prompt repeated (HF generate has no n > 1 without sampling).
    prompts, settings = [prompt] * args.batch, dict(batch_size=args.batch, max_new_tokens=args.tokens, do_sample=False)

    def plain():
        out = metalens.generate(model, prompts, **settings)
        steps["plain"].append(max(map(len, out.ids)))

    def with_head():
        readout = HeadReadout(head)
        with head.applied(model):
            out = metalens.generate(model, prompts, mask_ids=list(head.token_ids), logits_processors=[readout],
                                    **settings)
        readings.append(readout.stacked())  # [batch, steps, K]
        steps["head"].append(max(map(len, out.ids)))

    times = abba_times({"plain": plain, "head": with_head}, args.repeats, model.device)
    per_token = {arm: [t / n for t, n in zip(times[arm], steps[arm][-args.repeats:])] for arm in times}
    ratio = paired_ratio(per_token["head"], per_token["plain"])
    plain_ms, head_ms = (statistics.median(per_token[arm]) * 1e3 for arm in ("plain", "head"))
    last = readings[-1]
    result = {"model": model.name, "device": str(model.device), "dtype": str(model.dtype), "tokens": args.tokens, "batch": args.batch,
              "repeats": args.repeats, "plain_ms_per_token": plain_ms, "head_ms_per_token": head_ms,
              "paired_ratio": ratio.to_dict(), "target": TARGET, "within_target": ratio.median <= TARGET,
              "decode_steps": steps["head"][-1], "readout_shape": list(last.shape),
              "readout_sums_to_one": bool(last.float().sum(-1).sub(1).abs().max() < 1e-4)}
    print(f"{model.name} on {model.device}: plain {plain_ms:.2f} ms/token, head masked + read {head_ms:.2f} ms/token; "
          f"paired ratio head/plain {ratio} over {ratio.n} ABBA repeats (target <= {TARGET})")
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()

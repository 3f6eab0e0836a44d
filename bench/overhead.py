"""Fixed per-call and per-step costs of metalens' mechanisms, where compute is negligible.

    python bench/overhead.py [--model tiny] [--batch 1] [--tokens 8] [--new 16] [--repeats 30] [--calls 1]
        [--profile ARM]

On a tiny random model with short inputs a forward pass costs little, so what an arm adds on top of
its baseline is the fixed cost a GPU would expose at scale (host syncs, copies, dtype conversions,
Python hooks per step). Pairs, each timed in ABBA order in one run (bench/common.py), reported in
microseconds and as the paired cost ratio arm / baseline (median of per-repeat ratios, bootstrap 95 %
interval; 1.0 = no overhead):

- capture:   `metalens.capture(texts, [last block], positions="last")`  vs  tokenize + HF forward
- cache:     `run_with_cache(ids, sites=[last block])`                   vs  HF forward on the same ids
- steered:   a decode step of `metalens.generate` with an additive edit   vs  a plain decode step
- head read: a decode step that masks K reserved ids and reads them with `HeadReadout`  vs  a plain step

Targets (issue #30): capture <= 1.1x, steered step <= 1.05x, head read <= 1.01x.
`--calls K` times K consecutive calls per repeat (per-call cost in a loop, as a capture over many batches
runs; less timer noise); the default 1 times single calls alternating with the other arm.
`--profile ARM` prints torch.profiler's top operators by self CPU time for that arm.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import abba_times, bench_model, bench_parser, paired_ratio, write_json  # noqa: E402

import metalens  # noqa: E402
from metalens import sites  # noqa: E402

TARGETS = {"capture": 1.1, "cache": 1.1, "steered": 1.05, "head read": 1.01}
TEXT = "The quick brown fox jumps over the lazy dog."


def _arms(model, args):
    """{pair name: (baseline fn, arm fn, units per call)}: units are calls or decode steps."""
    texts = [TEXT] * args.batch
    batch = model.tokenize(texts, max_length=args.tokens)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    last = sites.resid_post(model.n_layers - 1)
    direction = torch.randn(model.d_model, generator=torch.Generator().manual_seed(0)).to(model.device, model.dtype)
    from metalens.introspect.heads import BinSpec, HeadReadout, ReservedHead

    head = ReservedHead.from_model(model, BinSpec(n_rewards=2, edges=(1, 2, 4, 8)), start=4)  # K = 8 rows

    @torch.inference_mode()
    def forward():
        model.hf(input_ids=ids, attention_mask=mask, use_cache=False)

    @torch.inference_mode()
    def tokenize_forward():
        b = model.tokenize(texts, max_length=args.tokens)
        model.hf(**b, use_cache=False)

    def capture():
        metalens.capture(model, texts, [last], positions="last", batch_size=args.batch, max_length=args.tokens,
                         progress=False)

    def cache():
        metalens.run_with_cache(model, ids, mask, sites=[last])

    gen = dict(max_new_tokens=args.new, mask_ids=[model.tokenizer.eos_token_id], batch_size=args.batch)

    def plain():
        metalens.generate(model, texts, **gen)

    def steered():
        metalens.generate(model, texts, edits={last: lambda x: x + direction}, **gen)

    def with_head():  # as introspect's sampling reads it: the K ids masked, the head read from each step's logits
        readout = HeadReadout(head)
        metalens.generate(model, texts, logits_processors=[readout],
                          **{**gen, "mask_ids": [*gen["mask_ids"], *head.token_ids]})
        readout.stacked()  # [batch, steps, K]

    return {
        "capture": (tokenize_forward, capture, 1),
        "cache": (forward, cache, 1),
        "steered": (plain, steered, args.new),
        "head read": (plain, with_head, args.new),
    }


def _looped(fn, calls: int):
    if calls == 1:
        return fn

    def run():
        for _ in range(calls):
            fn()

    return run


def _profile(fn, rows: int = 15) -> None:
    from torch.profiler import ProfilerActivity, profile

    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(5):
            fn()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def main(argv=None) -> dict:
    parser = bench_parser(__doc__)
    parser.set_defaults(model="tiny")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=8, help="tokens per input")
    parser.add_argument("--new", type=int, default=16, help="decode steps per generate call")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--calls", type=int, default=1, help="consecutive calls timed together per repeat")
    parser.add_argument("--profile", default=None, choices=sorted(TARGETS), help="profile this pair's arm")
    args = parser.parse_args(argv)
    if args.calls < 1:
        raise SystemExit(f"--calls must be >= 1, not {args.calls}.")
    model = bench_model(args.model, args.device, args.dtype)
    pairs = _arms(model, args)
    if args.profile:
        base, arm, _ = pairs[args.profile]
        print(f"--- baseline of {args.profile}"), _profile(base)
        print(f"--- {args.profile}"), _profile(arm)
    print(f"model={model.name} device={model.device} dtype={model.dtype} batch={args.batch} tokens={args.tokens} "
          f"new={args.new} repeats={args.repeats} torch_threads={torch.get_num_threads()}")
    print(f"{'pair':10s} {'baseline us':>12s} {'arm us':>10s} {'cost ratio [95% CI]':>24s} {'target':>7s}")
    rows = {}
    for name, (base, arm, units) in pairs.items():
        looped = {name: _looped(fn, args.calls) for name, fn in (("baseline", base), ("arm", arm))}
        times = abba_times(looped, args.repeats, model.device, warmup=2)
        ratio = paired_ratio(times["arm"], times["baseline"])
        us = {k: 1e6 * sorted(v)[len(v) // 2] / (units * args.calls) for k, v in times.items()}
        met = ratio.median <= TARGETS[name]
        print(f"{name:10s} {us['baseline']:12.1f} {us['arm']:10.1f} {str(ratio):>24s} {TARGETS[name]:>6.2f}"
              f"{'' if met else '  (not met)'}")
        rows[name] = {"baseline_us": us["baseline"], "arm_us": us["arm"], "unit": "step" if units > 1 else "call",
                      "cost_ratio": ratio.to_dict(), "target": TARGETS[name], "met": met,
                      "seconds": times}
    result = {"model": model.name, "device": str(model.device), "dtype": str(model.dtype), "batch": args.batch,
              "tokens": args.tokens, "new_tokens": args.new, "repeats": args.repeats, "calls_per_repeat": args.calls,
              "torch_threads": torch.get_num_threads(), "pairs": rows}
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()

"""Shared benchmark helpers: ABBA-interleaved timing, paired ratios with intervals, peak extra memory.

Every timing bench reports a *paired* ratio: within one repeat all arms run back to back (in
forward order on even repeats, reversed on odd ones, so drift in machine load hits every arm
alike), the ratio is taken within the repeat, and the median of those per-repeat ratios comes with
a bootstrap 95 % interval over repeats. Two runs on one machine should agree within their intervals.
"""
from __future__ import annotations

import os
import random
import statistics
import threading
import time
from dataclasses import asdict, dataclass

import torch

_PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * _PAGE


def peak_extra_memory(fn, device: torch.device) -> int:
    """Bytes above the starting level at the peak of `fn()` (CUDA allocator or sampled RSS)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated(device) - start
    start, peak, done = _rss(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.0005)

    thread = threading.Thread(target=sample)
    thread.start()
    try:
        fn()
    finally:
        done.set()
        thread.join()
    return max(peak[0], _rss()) - start


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def abba_times(fns: dict, repeats: int, device: torch.device, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each fn, `repeats` each, in ABBA order (reversed on odd repeats)."""
    if repeats < 2:
        raise ValueError(f"repeats must be >= 2 for a paired ratio with an interval, not {repeats}.")
    names = list(fns)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else names[::-1]:
            _sync(device)
            start = time.perf_counter()
            fns[name]()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times


@dataclass
class PairedRatio:
    """Median of per-repeat ratios numerator/denominator, with a bootstrap 95 % interval over repeats."""

    median: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        return f"{self.median:.3f} [{self.low:.3f}, {self.high:.3f}]"

    def to_dict(self) -> dict:
        return asdict(self)


def paired_ratio(numerator: list[float], denominator: list[float], n_boot: int = 2000, seed: int = 0) -> PairedRatio:
    """Paired ratio of two arms timed in the same repeats (e.g. baseline seconds / method seconds)."""
    if len(numerator) != len(denominator) or len(numerator) < 2:
        raise ValueError("Need two equally long lists of at least 2 paired timings.")
    ratios = [a / b for a, b in zip(numerator, denominator)]
    rng = random.Random(seed)
    boots = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(n_boot))
    return PairedRatio(statistics.median(ratios), boots[int(0.025 * n_boot)], boots[int(0.975 * n_boot) - 1],
                       len(ratios))


def bench_model(name: str, device: str | None = None, dtype: str | None = None):
    """The model a bench runs on: an embedded/hub/local name, 'tiny' (random weights, for smoke runs), or
    'random:CONFIG' (random weights in a real model's shape, e.g. random:gemma-3-270m, random:llama-1b: no
    download, for GPU machines that cannot fetch weights). dtype: 'float32' | 'bfloat16' (default: the loader's)."""
    torch_dtype = getattr(torch, dtype) if dtype else None
    if name == "tiny":
        from metalens.testing import tiny_model

        return tiny_model("gemma3", device=device or "cpu", dtype=torch_dtype)
    if name.startswith("random:"):
        from metalens.loading import default_device
        from metalens.testing import random_model

        return random_model(name.removeprefix("random:"), device=device or default_device(), dtype=torch_dtype)
    import metalens

    return metalens.load_model(name, device=device, dtype=torch_dtype)


MODEL_HELP = "embedded name, local dir, hub id, 'tiny', or 'random:gemma-3-270m' / 'random:llama-1b' (random weights)"
DTYPE_HELP = "float32 or bfloat16 (default: bfloat16 on CUDA, float32 on CPU)"


def write_json(path, result: dict) -> None:
    """Write a bench's numbers to `path` (folders created), when a path is given."""
    if path:
        import json
        from pathlib import Path

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(result, indent=2))


def bench_parser(doc: str):
    """An argument parser with the options every bench shares: --model, --device, --dtype, --json."""
    import argparse

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gemma-3-270m", help=MODEL_HELP)
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None, help=DTYPE_HELP)
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    return parser


def generation_parser(doc: str, batch: int, repeats: int):
    """`bench_parser` plus the generation benches' options: --batch, --new, --repeats, --strength, --threads."""
    parser = bench_parser(doc)
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--new", type=int, default=32, help="new tokens per prompt")
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--strength", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    return parser


def run_with_threads(threads: int | None, fn, *args):
    """`fn(*args)` with torch's CPU threads set to `threads` (None: as they are; on a CPU shared with other
    jobs, 1 avoids threads spinning on each other) and warnings silenced; the thread count is restored."""
    import warnings

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(*args)
    finally:
        torch.set_num_threads(before)

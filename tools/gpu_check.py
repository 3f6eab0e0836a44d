"""`make gpu-check`: every area's quick path on the GPU against the CPU, then the five benches, in one table.

    python3 tools/gpu_check.py [--device cuda] [--out results/gpu/results.json] [--smoke]

(a) tests/gpu/areas.py's checks (the ones tests/gpu runs under pytest) in float32 and bfloat16 on the
device, each compared with the CPU float32 result on the same tiny model and inputs; (b) the five
benches (capture, steer, circuits, introspect, fastgen) on random-weight models in real shapes
(`random:llama-1b`, `random:llama-8b` and `random:gemma-3-270m`: no weights travel), at the sizes
researchers run (capture batch 32 x 512 tokens, generation batch 16 x 128 new tokens, 8 paired repeats);
(c) one table: card, model config, dtype, each bench's ratios, absolute tokens/s and, where known, the
card's roofline for the arm's work, written with the raw numbers to --out. Exits 1 if a comparison is
outside its tolerance or a step fails.

Budget on one H100 (design, not yet measured: `make gpu-check` must stay under 8 minutes with its pytest
part): the benches run in `FULL`'s order, most wanted first, and a bench that would start after
`--budget` seconds (default 420) is skipped and listed as such, so the run always ends in time.
Estimates: area checks ~1.5 min; llama-1b capture ~0.3 min and fastgen ~1.5 min (the default arm's
128 eager steps dominate; the first fast call compiles); llama-8b capture ~1 min and fastgen ~2 min.
`--smoke` runs the same steps on tiny models with small sizes (on the CPU when no GPU is present).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# Appended, not prepended: the repo root holds a `metalens/` folder (the core alone) that must not
# shadow the installed metalens (with its areas) on a GPU machine that runs from carried wheels.
sys.path.append(str(ROOT / "bench"))


def _load(path: Path, name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


areas = _load(ROOT / "tests" / "gpu" / "areas.py", "gpu_check_areas")


def load_bench(name: str):
    """The module bench/NAME.py."""
    return _load(ROOT / "bench" / f"{name}.py", f"bench_{name}")

BUDGET_S = 420  # seconds of this script; `make gpu-check`'s pytest part comes on top (8 minutes in all)
# (bench, model, extra argv): sized so that each finishes in well under a minute on an H100.
FULL = [  # most wanted first: rows past the budget are skipped (issue #30's targets are on llama-1b / llama-8b)
    ("capture", "random:llama-1b", ["--batch", "32", "--tokens", "512", "--repeats", "8"]),
    ("fastgen", "random:llama-1b", ["--batch", "16", "--new", "128", "--repeats", "8"]),
    ("capture", "random:llama-8b", ["--batch", "32", "--tokens", "512", "--repeats", "8"]),
    ("fastgen", "random:llama-8b", ["--batch", "16", "--new", "128", "--repeats", "8"]),
    ("introspect", "random:llama-1b", ["--tokens", "32", "--batch", "4", "--repeats", "8"]),
    ("steer", "random:llama-1b", ["--batch", "16", "--new", "32", "--repeats", "8"]),
    ("capture", "random:gemma-3-270m", ["--batch", "32", "--tokens", "512", "--repeats", "8"]),
    ("fastgen", "random:gemma-3-270m", ["--batch", "16", "--new", "32", "--repeats", "4"]),
    ("steer", "random:gemma-3-270m", ["--batch", "8", "--new", "32", "--repeats", "4"]),
    ("introspect", "random:gemma-3-270m", ["--tokens", "32", "--batch", "4", "--repeats", "4"]),
    ("circuits", "random:gemma-3-270m", ["--task", "arithmetic", "--n", "4", "--repeats", "3"]),
]
SMOKE = [
    ("capture", "tiny", ["--batch", "2", "--tokens", "16", "--repeats", "2"]),
    ("steer", "tiny", ["--batch", "2", "--new", "3", "--repeats", "2"]),
    ("circuits", "tiny", ["--task", "induction", "--n", "2", "--repeats", "2"]),
    ("introspect", "tiny", ["--tokens", "4", "--batch", "2", "--repeats", "2"]),
    ("fastgen", "tiny", ["--batch", "2", "--new", "4", "--repeats", "2"]),
]


def _row(ratio_name: str, ratio: dict, tokens_per_s=None, baseline_tokens_per_s=None, roofline=None) -> dict:
    return {"ratio_name": ratio_name, "ratio": ratio, "tokens_per_s": tokens_per_s,
            "baseline_tokens_per_s": baseline_tokens_per_s, "roofline_tokens_per_s": roofline}


def headlines(name: str, out: dict) -> list[dict]:
    """A bench's table rows from its returned dict: each a ratio (with interval), tokens/s and, where the bench
    knows the card, the roofline tokens/s of the work that arm needs."""
    if name == "capture":
        methods = out["methods"]
        base = methods["(a) HF forward (full, with logits)"]
        mid = methods[next(k for k in methods if k.startswith("(b) "))]
        rows = [_row("capture mid / HF forward", mid["speedup"], mid["tokens_per_s"], base["tokens_per_s"],
                     mid.get("roofline_tokens_per_s"))]
        for depth, ratio in out.get("capture_share_of_limit", {}).items():
            rows.append(_row(f"capture {depth} / its limit (speed)", ratio))
        for key, label in (("(f) ", "all blocks (ours) / HF forward"), ("(g) ", "all blocks (nnsight) / HF fwd")):
            arm = next((methods[k] for k in methods if k.startswith(key)), None)
            if arm is not None:
                rows.append(_row(label, arm["speedup"], arm["tokens_per_s"], base["tokens_per_s"],
                                 arm.get("roofline_tokens_per_s")))
        return rows
    if name == "steer":
        return [_row("steered (HF hooks) / plain", out["paired_ratio"]["steered (HF hooks)"],
                     out["tokens_per_s"]["steered (HF hooks)"], out["tokens_per_s"]["plain generate"])]
    if name == "fastgen":
        tps, ratio = out["tokens_per_s"], out["paired_ratio"]
        return [_row("fast / default generate", ratio["fast / default"], tps["fast plain"], tps["default generate"]),
                _row("fast steered / fast plain", ratio["fast steered / fast plain"], tps["fast steered"],
                     tps["fast plain"])]
    if name == "circuits":
        return [_row("exact / attribution (time)", out["ratio"])]
    return [_row("head / plain (s per token)", out["paired_ratio"], out["batch"] * 1e3 / out["head_ms_per_token"],
                 out["batch"] * 1e3 / out["plain_ms_per_token"])]


def card(device: str) -> str:
    """The accelerator's name, or 'cpu'."""
    return torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"


def table(result: dict) -> str:
    """The printed table: area checks, then one line per bench."""
    lines = [f"card: {result['card']}   torch {torch.__version__}   total {result['seconds']:.0f} s "
             f"(budget {BUDGET_S} s)", "", f"{'area':14s} {'quantity':44s} {'dtype':9s} {'diff':>10s} {'tol':>8s}  ok"]
    for r in result["checks"]:
        lines.append(f"{r['area']:14s} {r['quantity'][:44]:44s} {r['dtype']:9s} {r['diff']:10.2e} {r['tol']:8.1e}  "
                     f"{'yes' if r['ok'] else 'NO'}")
    lines += ["", f"{'bench':11s} {'model config':22s} {'dtype':9s} {'ratio':34s} {'median [95% CI]':24s} "
                  f"{'tokens/s':>10s} {'baseline tok/s':>14s} {'roofline':>10s} {'s':>6s}"]

    def number(x):
        return "-" if x is None else f"{x:.0f}"

    for b in result["benches"]:
        if "error" in b:
            lines.append(f"{b['bench']:11s} {b['model']:22s} FAILED: {b['error'][:80]}")
            continue
        if "skipped" in b:
            lines.append(f"{b['bench']:11s} {b['model']:22s} skipped ({b['skipped']})")
            continue
        for i, row in enumerate(b["rows"]):
            r = row["ratio"]
            lines.append(f"{b['bench']:11s} {b['model']:22s} {b['dtype']:9s} {row['ratio_name']:34s} "
                         f"{r['median']:.3f} [{r['low']:.3f}, {r['high']:.3f}]   {number(row['tokens_per_s']):>10s} "
                         f"{number(row['baseline_tokens_per_s']):>14s} {number(row['roofline_tokens_per_s']):>10s} "
                         f"{b['seconds'] if i == 0 else 0:6.0f}")
    return "\n".join(lines)


def main(argv=None) -> dict:
    """Run the checks and benches; print the table, write --out, return the result."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=str(ROOT / "results" / "gpu" / "results.json"))
    parser.add_argument("--smoke", action="store_true", help="tiny models, small sizes (CPU ok): checks the script")
    parser.add_argument("--skip-benches", action="store_true")
    parser.add_argument("--budget", type=float, default=BUDGET_S,
                        help=f"seconds after which no further bench starts (default {BUDGET_S})")
    args = parser.parse_args(argv)
    if not args.smoke and not args.device.startswith("cuda"):
        parser.error("the full check needs a GPU (--device cuda); use --smoke to exercise it on the CPU.")
    start = time.perf_counter()
    result = {"card": card(args.device), "device": args.device, "smoke": args.smoke, "torch": torch.__version__,
              "checks": [], "benches": [], "errors": []}
    dtypes = [torch.float32, torch.bfloat16]
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in dtypes:
            for area in ("capture", "neurofeedback", "steering", "circuits", "introspect"):
                try:
                    rows = areas.run_all(args.device, dtype, Path(tmp) / f"{area}-{dtype}", areas=[area])
                    result["checks"] += [r.to_dict() for r in rows]
                except Exception:
                    result["errors"].append(f"{area} {dtype}: {traceback.format_exc()}")
                    print(result["errors"][-1], file=sys.stderr)
    for bench, model, extra in ([] if args.skip_benches else SMOKE if args.smoke else FULL):
        for dtype in (["float32"] if args.smoke else ["bfloat16"]):
            began = time.perf_counter()
            row = {"bench": bench, "model": model, "dtype": dtype, "args": extra}
            if began - start > args.budget:
                row.update(skipped=f"budget: {began - start:.0f} s spent of {args.budget:.0f}", seconds=0.0)
                result["benches"].append(row)
                continue
            try:
                out = load_bench(bench).main(["--model", model, "--device", args.device, "--dtype", dtype, *extra])
                row.update(rows=headlines(bench, out), raw=out)
            except Exception:
                row["error"] = traceback.format_exc().strip().splitlines()[-1]
                result["errors"].append(f"bench {bench} {model}: {traceback.format_exc()}")
                print(result["errors"][-1], file=sys.stderr)
            row["seconds"] = time.perf_counter() - began
            result["benches"].append(row)
            _save(args.out, result)  # a run cut short keeps the rows it finished
            print(f"[{time.perf_counter() - start:.0f} s] {bench} {model}: {row.get('error', 'done')}", flush=True)
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
    result["seconds"] = time.perf_counter() - start
    result["ok"] = not result["errors"] and all(r["ok"] for r in result["checks"]) and bool(result["checks"])
    print(table(result))
    print("gpu-check:", "PASSED" if result["ok"] else "FAILED")
    _save(args.out, result)
    return result


def _save(path, result: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)

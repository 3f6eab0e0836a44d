"""`metalens` command line: each verb parses arguments and calls one public function."""
from __future__ import annotations

import argparse
import importlib
import sys

# Areas add their own verbs: each module exposes `register(subparsers)`.
AREA_CLIS = ["probes.cli", "probes.introspect.cli", "steering.cli", "circuits.cli", "analyses.cli"]


def _capture(args) -> None:
    import metalens

    model = metalens.load_model(args.model, device=args.device)
    out = metalens.capture(
        model, metalens.read_texts(args.texts), args.site, positions=args.positions,
        batch_size=args.batch_size, out=args.out, max_length=args.max_length,
        shard_index=args.shard_index, num_shards=args.num_shards,
    )
    print(f"wrote {out}")


def _merge(args) -> None:
    import metalens

    print(f"wrote {metalens.merge_manifests(args.dir)}")


def _demo(args) -> None:
    from analyses.demo import run_demo

    run_demo(args.model, args.out, device=args.device, areas=args.area)
    print(f"open {args.out}/index.html")


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """--model and --device, shared by every verb that loads a model."""
    parser.add_argument("--model", default="gemma-3-270m", help="embedded name, local dir or hub id")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metalens", description=__doc__)
    sub = parser.add_subparsers(dest="verb", required=True)
    cap = sub.add_parser("capture", help="capture activations of texts into sharded safetensors")
    add_model_args(cap)
    cap.add_argument("--site", action="append", required=True, help="hook name; repeat for several")
    cap.add_argument("--texts", required=True, help="file with one text per line")
    cap.add_argument("--out", required=True, help="output directory (resumable)")
    cap.add_argument("--positions", default="last", choices=["last", "mean", "all"])
    cap.add_argument("--batch-size", type=int, default=16)
    cap.add_argument("--max-length", type=int, default=None)
    cap.add_argument("--shard-index", type=int, default=0, help="this process's part (0-based)")
    cap.add_argument("--num-shards", type=int, default=1, help="number of processes splitting the texts")
    cap.set_defaults(func=_capture)
    merge = sub.add_parser("merge", help="merge the part manifests of a multi-process capture")
    merge.add_argument("dir")
    merge.set_defaults(func=_merge)
    demo = sub.add_parser("demo", help="quick run of every area on one model; writes OUT/index.html")
    add_model_args(demo)
    demo.add_argument("--out", default="reports")
    demo.add_argument("--area", action="append", default=None, help="only these areas (repeatable)")
    demo.set_defaults(func=_demo)
    for name in AREA_CLIS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name and name.startswith(err.name):
                continue  # that area has no CLI yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, ModuleNotFoundError) as err:
        print(f"metalens: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

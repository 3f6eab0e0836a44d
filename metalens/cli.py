"""`metalens` command line: each verb parses arguments and calls one public function.

The core owns `capture`, `merge` and `sae train|eval`; areas add their verbs through the `metalens.verbs` entry
point group (see pyproject.toml), so the core names no area. An area that fails to import
keeps its verbs: calling one prints the import error instead of the verb vanishing.
"""
from __future__ import annotations

import argparse
import sys
import traceback
from importlib.metadata import entry_points

from metalens.fastgen import fast_generation
from metalens.options import (Parser, add_model_args, add_out_arg, check_out, existing_dir, existing_file, int_range,
                              load_model_from_args, mark_out, nonneg_int, positive_int)
from metalens.sae.commands import add_sae_verbs

VERB_GROUP = "metalens.verbs"


def _capture(args) -> None:
    import metalens

    check_out(args.out, "capture")
    if args.shard_index >= args.num_shards:
        raise ValueError(f"--shard-index {args.shard_index} must be below --num-shards {args.num_shards}.")
    texts = metalens.read_texts(args.texts)
    model = load_model_from_args(args)
    for site in args.site:
        metalens.resolve_site(model, site)  # a bad site is refused before --out is touched
    mark_out(args.out, "capture")
    out = metalens.capture(
        model, texts, args.site, positions=args.positions,
        batch_size=args.batch_size, out=args.out, max_length=args.max_length,
        shard_index=args.shard_index, num_shards=args.num_shards,
    )
    print(f"wrote {out}")


def _merge(args) -> None:
    import metalens

    print(f"wrote {metalens.merge_manifests(args.dir)}")


class AreaImportError(RuntimeError):
    """An area's CLI module failed to import; raised when one of its verbs is called."""


def _broken_verb(sub, verb: str, target: str, err: BaseException) -> None:
    message = (f"'metalens {verb}' is unavailable: {target} failed to import "
               f"({type(err).__name__}: {err}). Reinstall metalens (`pip install -e .`) or fix that module.")
    parser = sub.add_parser(verb, help=f"(unavailable: {target} failed to import)", add_help=False)

    def fail(args) -> None:
        raise AreaImportError(message)

    parser.set_defaults(func=fail, any_arguments=True)


def register_area_verbs(sub, points=None) -> None:
    """Add each area's verbs; an area whose module fails to import gets stub verbs that report why."""
    points = entry_points(group=VERB_GROUP) if points is None else points
    by_target: dict[str, list] = {}
    for point in points:
        by_target.setdefault(point.value, []).append(point)
    for target, group in sorted(by_target.items()):
        try:
            register = group[0].load()
        except Exception as err:  # any failure: the user must see it, not a missing verb
            for point in group:
                _broken_verb(sub, point.name, target, err)
            continue
        before = set(sub.choices)
        register(sub)
        missing = {p.name for p in group} - set(sub.choices) - before
        if missing:
            raise RuntimeError(f"{target} registered no verb named {sorted(missing)}: fix pyproject's entry points.")


def build_parser(points=None) -> argparse.ArgumentParser:
    """The `metalens` parser: core verbs plus every area's registered verbs."""
    parser = Parser(prog="metalens", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show the full traceback on an error")
    sub = parser.add_subparsers(dest="verb", required=True)
    cap = sub.add_parser("capture", help="capture activations of texts into sharded safetensors")
    add_model_args(cap)
    cap.add_argument("--site", action="append", required=True, help="hook name; repeat for several")
    cap.add_argument("--texts", type=existing_file, required=True, help="file with one text per line")
    add_out_arg(cap, help="output directory (resumable)")
    cap.add_argument("--positions", default="last", choices=["last", "mean", "all"])
    cap.add_argument("--batch-size", type=int_range(1, 65536), default=16)
    cap.add_argument("--max-length", type=int_range(1, 1_000_000), default=None,
                     help="truncate texts to this many tokens")
    cap.add_argument("--shard-index", type=nonneg_int, default=0, help="this process's part (0-based)")
    cap.add_argument("--num-shards", type=positive_int, default=1, help="number of processes splitting the texts")
    cap.set_defaults(func=_capture)
    merge = sub.add_parser("merge", help="merge the part manifests of a multi-process capture")
    merge.add_argument("dir", type=existing_dir, help="the capture folder holding part manifests")
    merge.set_defaults(func=_merge)
    add_sae_verbs(sub)
    register_area_verbs(sub, points)
    return parser


# Errors a user can cause and fix (bad values, files, folders, missing packages): one line, exit 2.
# Anything else is a bug in metalens and keeps its traceback.
USER_ERRORS = (ValueError, OSError, ModuleNotFoundError, AreaImportError)


def one_line(err: BaseException) -> str:
    """The error as one line: its message with newlines folded, its file named when the OS gave one."""
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, OSError) and err.filename and str(err.filename) not in text:
        text = f"{err.filename}: {text}"
    if isinstance(err, UnicodeDecodeError):
        text = f"a file is not UTF-8 text ({text}); save it as UTF-8"
    return text


def main(argv: list[str] | None = None, points=None) -> int:
    parser = build_parser(points)
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args, "any_arguments", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        with fast_generation(getattr(args, "fast", False)):  # a verb's --fast (add_fast_arg)
            args.func(args)
    except USER_ERRORS as err:
        if args.debug:
            traceback.print_exc()
        print(f"metalens {args.verb}: error: {one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"metalens {args.verb}: interrupted; rerun the same command to resume where it supports it",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

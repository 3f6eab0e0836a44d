"""The CLI vocabulary: one spelling and one meaning per flag across every verb, checked at the boundary.

Every verb builds its flags from here: `add_model_args` (--model, --device, --dtype), `add_layers_arg`
(--layers 3 6 | all), `add_out_arg`, `add_seed_arg`, `add_data_arg`; numeric flags take one of the
`type=` checkers below, so a bad value is one line naming the flag and its valid range (exit 2)
before any model loads. `check_out` refuses an --out that is a file or holds another kind of run.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

RUN_MARKER = "metalens-run.json"  # written into every --out: which verb's run the folder holds


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `metalens VERB: error: argument --n: ...`, exit 2, no usage dump."""

    def error(self, message: str):  # noqa: D102 - argparse's hook
        print(f"{self.prog}: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


# --- value checkers (argparse `type=`): raise ArgumentTypeError, which argparse prefixes with the flag --------


def _number(text: str, kind=float):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def int_range(low: int | None = None, high: int | None = None):
    """A `type=` that accepts integers in [low, high] (either end open when None)."""
    def check(text: str) -> int:
        value = _number(text, int)
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be an integer {_span(low, high)}, got {value}")
        return value
    check.__name__ = f"integer {_span(low, high)}"
    return check


def float_range(low: float | None = None, high: float | None = None, *, low_open: bool = False):
    """A `type=` that accepts finite numbers in [low, high] ((low, high] with `low_open`)."""
    def check(text: str) -> float:
        value = _number(text, float)
        bad_low = low is not None and (value <= low if low_open else value < low)
        if bad_low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be a finite number {_span(low, high, low_open)}, got {value:g}")
        return value
    check.__name__ = f"number {_span(low, high, low_open)}"
    return check


def _span(low, high, low_open: bool = False) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}]"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    return f"<= {high:g}" if high is not None else "(any)"


positive_int = int_range(1)
nonneg_int = int_range(0)
finite_float = float_range()
positive_float = float_range(0, low_open=True)
nonneg_float = float_range(0)
probability = float_range(0, 1)


def int_list(low: int | None = None, high: int | None = None):
    """A `type=` for comma-separated integers ("0,2,4"), each in [low, high], no duplicates."""
    one = int_range(low, high)

    def check(text: str) -> list[int]:
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if not parts:
            raise argparse.ArgumentTypeError(f"{text!r} holds no integer")
        values = [one(p) for p in parts]
        if len(set(values)) != len(values):
            raise argparse.ArgumentTypeError(f"{text!r} repeats a value")
        return values
    check.__name__ = f"comma-separated integers {_span(low, high)}"
    return check


def layer_token(text: str):
    """One --layers value: a block index (>= 0) or 'all'; the model checks the upper end."""
    if text == "all":
        return "all"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a block number nor 'all'") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"block numbers start at 0, got {value}")
    return value


def existing_file(text: str) -> Path:
    """A `type=` for an input file that must exist and be a file."""
    path = Path(text).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text} is a {'directory' if path.is_dir() else 'special file'}, not a file")
    return path


def existing_dir(text: str) -> Path:
    """A `type=` for an input folder (a saved run or artifact) that must exist."""
    path = Path(text).expanduser()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: no such directory" if not path.exists() else f"{text} is a file, "
                                         "not a directory")
    return path


def out_path(text: str) -> Path:
    """A `type=` for --out: a folder that may not exist yet, but is not a file."""
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file: --out names a folder; give a new or existing folder")
    return path


# --- shared flags ----------------------------------------------------------------------------------------------


def add_model_args(parser: argparse.ArgumentParser, *, several: bool = False) -> None:
    """--model, --device and --dtype, shared by every verb that loads a model.

    several: --model may repeat (a list; None when not given: the verb picks its default).
    """
    if several:
        parser.add_argument("--model", action="append", default=None,
                            help="embedded name, local dir, hub id or random:NAME; repeat for several models")
    else:
        parser.add_argument("--model", default="gemma-3-270m",
                            help="embedded name, local dir, hub id or random:NAME (random weights, for tests)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                        help="weights' dtype (default: bfloat16 on a GPU, float32 on CPU)")


def load_model_from_args(args):
    """The model named by --model / --device / --dtype (the one loader every verb calls)."""
    import metalens

    return metalens.load_model(args.model, device=args.device, dtype=getattr(args, "dtype", None))


class _LayersAction(argparse.Action):
    """Stores --layers, refusing `all` beside block numbers (or `all` where the verb reads named blocks) at parse time."""

    def __call__(self, parser, namespace, values, option_string=None):
        if "all" in values and len(values) > 1:
            parser.error(f"argument --layers: give block numbers or 'all' alone, not both (got {' '.join(map(str, values))})")
        if "all" in values and not parser.get_default("_layers_allow_all"):
            parser.error("argument --layers: this verb reads named blocks, not 'all'")
        setattr(namespace, self.dest, values)


def add_layers_arg(parser: argparse.ArgumentParser, *, help: str = "blocks to use", allow_all: bool = True,
                   default_note: str = "the model's default_layers()") -> None:
    """--layers 3 6 (or `all`): resolve with `model.resolve_layers(args.layers)`; None means the default."""
    parser.add_argument("--layers", nargs="+", type=layer_token, default=None, metavar="L", action=_LayersAction,
                        help=f"{help}: block numbers{', or all' if allow_all else ''} (default: {default_note})")
    parser.set_defaults(_layers_allow_all=allow_all)


def add_out_arg(parser: argparse.ArgumentParser, *, required: bool = True, default: str | None = None,
                help: str = "output folder (resumed or refused if it holds another run)") -> None:
    """--out DIR: where the run writes results.json, report.html and its artifacts."""
    parser.add_argument("--out", type=out_path, required=required and default is None, default=default, help=help)


def add_fast_arg(parser: argparse.ArgumentParser) -> None:
    """--fast: the verb's generation decodes on the compiled fast path (`metalens.fast_generation`)."""
    parser.add_argument("--fast", action="store_true",
                        help="decode with a static KV cache and a compiled step (CUDA graphs on a GPU): the same "
                             "tokens (tested on a CPU) without per-step Python overhead, after a compile (minutes on a CPU); "
                             "generation that needs Python hooks keeps the hook path")


def add_seed_arg(parser: argparse.ArgumentParser, default: int = 0) -> None:
    """--seed N: the run's random seed (splits, sampling, initialisation)."""
    parser.add_argument("--seed", type=nonneg_int, default=default, help=f"random seed (default {default})")


def add_data_arg(parser: argparse.ArgumentParser, *, required: bool = False, help: str = "input data file") -> None:
    """--data FILE: the user's own data (a .jsonl / .txt / .csv the verb documents)."""
    parser.add_argument("--data", type=existing_file, required=required, default=None, help=help)


# --- output folders --------------------------------------------------------------------------------------------


def check_out(out, kind: str) -> Path:
    """Refuse an --out that is a file or holds another kind of metalens run; return it as a Path.

    A folder is claimed by `mark_out`; a capture store (manifest.json) belongs to `capture`.
    """
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {path} is a file: name a folder (new or one this verb wrote before).")
    marker = path / RUN_MARKER
    held = None
    if marker.is_file():
        try:
            held = json.loads(marker.read_text())["kind"]
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"{marker} is malformed: remove it if the folder is yours, or pick another --out.") from None
    elif kind != "capture" and (path / "manifest.json").is_file() and any(path.glob("*.safetensors")):
        held = "capture"
    if held is not None and held != kind:
        raise ValueError(f"--out {path} holds a '{held}' run, not a '{kind}' one: pick another folder.")
    return path


def mark_out(out, kind: str) -> Path:
    """Create --out (if needed) and record which verb's run it holds."""
    path = check_out(out, kind)
    path.mkdir(parents=True, exist_ok=True)
    marker = path / RUN_MARKER
    if not marker.exists():
        marker.write_text(json.dumps({"kind": kind}) + "\n")
    return path

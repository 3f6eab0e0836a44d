"""`metalens sensitivity AREA`: each area's planted-effect check, found through the
`metalens.sensitivity` entry point group (AREA = the entry point's name), so the core names no area."""
from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

from metalens.options import add_out_arg, int_range, nonneg_float

SENSITIVITY_GROUP = "metalens.sensitivity"


def add_sweep_args(parser, *, strengths, strengths_help: str, seeds: int = 3, seeds_help: str = "seeds per strength",
                   strength_type=nonneg_float, out_holds: str = "runs/") -> None:
    """The flags every `metalens sensitivity AREA` shares: --out (resumable), --strengths (`strengths_help`
    says their unit) and --seeds (seeds 0..K-1)."""
    add_out_arg(parser, help=f"output directory for results.json, report.html and {out_holds} (rerun to resume, "
                             "or with more --strengths or --seeds to extend)")
    parser.add_argument("--strengths", type=strength_type, nargs="+", metavar="S",
                        default=None if strengths is None else list(strengths), help=strengths_help)
    parser.add_argument("--seeds", type=int_range(1, 1000), default=seeds, help=f"{seeds_help} (0..K-1; default {seeds})")


def print_sweep(result, out, note: str = "") -> None:
    """The terminal summary of a finished sweep, then where it was written (after `note`, if any)."""
    print("\n".join(result.summary_lines()))
    print(f"{note + '; ' if note else ''}wrote {Path(out) / 'results.json'} and report.html")


def register(subparsers, points=None) -> None:
    """Add the `sensitivity` verb with one sub-command per registered area."""
    parser = subparsers.add_parser("sensitivity", help="detection curve of an area's pipeline: plant an effect of "
                                                       "known strength, run the pipeline as published, count detections")
    areas = parser.add_subparsers(dest="area", required=True, metavar="AREA")
    points = entry_points(group=SENSITIVITY_GROUP) if points is None else points
    seen = set()
    for point in sorted(points, key=lambda p: p.name):
        if point.value in seen:
            continue  # one register function adds all of its area's sub-commands
        seen.add(point.value)
        point.load()(areas)

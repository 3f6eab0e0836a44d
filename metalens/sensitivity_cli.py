"""`metalens sensitivity AREA`: each area's planted-effect check, found through the
`metalens.sensitivity` entry point group (AREA = the entry point's name), so the core names no area."""
from __future__ import annotations

from importlib.metadata import entry_points

SENSITIVITY_GROUP = "metalens.sensitivity"


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

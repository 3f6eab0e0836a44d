"""Index a results/sensitivity folder whose sweeps sit in sub-folders or sibling jsons (drivers, planted
directions, models, samplers): writes DIR/results.json with the primary sweep's result keys at the top
(`detection`, `false_positive_share`, `min_detectable_strength`, ...) and every sweep's under `runs`,
named by its path relative to DIR.

    python tools/sensitivity_index.py results/sensitivity/atlas correct
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from metalens.artifact import read_json
from metalens.sensitivity import RESULT_KEYS

INDEX = "results.json"


def sweeps(folder: Path) -> dict[str, dict]:
    """{name: result} for every json under `folder` holding a sweep's result keys (trial records in runs/
    and the index itself are skipped); name = the path relative to `folder`, without `/results.json` or `.json`."""
    found = {}
    for path in sorted(folder.rglob("*.json")):
        rel = path.relative_to(folder)
        if "runs" in rel.parts or rel == Path(INDEX):
            continue
        data = read_json(path, "sweep result")
        if all(k in data for k in RESULT_KEYS):
            name = str(rel.parent) if rel.name == INDEX else str(rel.with_suffix(""))
            found[name] = {k: data[k] for k in RESULT_KEYS}
    return found


def index(folder: str | Path, primary: str) -> dict:
    """Write and return `folder`/results.json: the `primary` sweep's keys at the top, all sweeps in `runs`."""
    folder = Path(folder)
    found = sweeps(folder)
    if primary not in found:
        raise SystemExit(f"sensitivity_index: no sweep named {primary!r} in {folder} (found: {sorted(found) or 'none'}); "
                         "name one of those as the primary.")
    out = {**found[primary], "primary": primary, "runs": found}
    (folder / INDEX).write_text(json.dumps(out, indent=1) + "\n")
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", help="a results/sensitivity/<area> folder")
    p.add_argument("primary", help="the sweep whose keys go at the top, e.g. correct or activations")
    a = p.parse_args(argv)
    out = index(a.folder, a.primary)
    print(f"wrote {Path(a.folder) / INDEX}: primary {a.primary}, runs {', '.join(out['runs'])}")


if __name__ == "__main__":
    main()

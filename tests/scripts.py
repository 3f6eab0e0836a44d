"""Load a tool from `tools/`, a bench from `bench/` or an experiment's one-off script from `results/` by
file path, for tests: none of them is an installed module.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "tools"
BENCH = ROOT / "bench"
RESULTS = ROOT / "results"


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def load_tool(name: str):
    """The module `tools/NAME.py`, executed once per call."""
    return _load(TOOLS / f"{name}.py", f"tools_{name}")


def load_bench(name: str):
    """The module `bench/NAME.py` (its `from common import ...` resolved against bench/)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return _load(BENCH / f"{name}.py", f"bench_{name}")


def load_result_script(experiment: str, name: str):
    """The one-off script `results/EXPERIMENT/NAME.py` of an experiment, executed once per call."""
    return _load(RESULTS / experiment / f"{name}.py", f"results_{experiment.replace('-', '_')}_{name}")

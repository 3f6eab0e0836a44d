"""The probes area's public surface: small, documented, and built only on the core's public API."""
import ast
from pathlib import Path

import metalens.probes as probes

ROOT = Path(__file__).parents[2]
AREA_FILES = sorted((ROOT / "probes").glob("*.py")) + [ROOT / "analyses" / "demo.py"]


def test_public_api_fits_on_one_screen_and_every_name_says_what_it_is():
    assert len(probes.__all__) <= 20  # one screen: workflows, their configs/results, the stages and pieces
    for name in probes.__all__:
        obj = getattr(probes, name)
        assert (obj.__doc__ or "").strip(), f"metalens.probes.{name} has no docstring"


def test_probe_training_is_named_apart_from_steering_training():
    assert probes.train_probe.__name__ == "train_probe" and not hasattr(probes, "train")


def test_figures_are_reachable_as_an_attribute():
    assert probes.figures.learning_curves and probes.figures.accuracy_by_layer


def _private_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            found += [f"from {node.module} import {a.name}" for a in node.names if a.name.startswith("_")]
    return found


def test_no_module_imports_another_modules_private_names():
    bad = {p.name: _private_imports(p) for p in AREA_FILES if _private_imports(p)}
    assert not bad, f"private names imported across modules: {bad}"


def test_no_area_module_spells_site_names_or_runs_the_model_itself():
    # Sites come from metalens.sites helpers, forward passes from metalens.run_with_cache / generate.
    for path in AREA_FILES:
        source = path.read_text()
        for banned in ("hook_resid", "blocks.{", "StopForward", ".hf.model(", ".hf.generate(", "final_logit_softcapping"):
            assert banned not in source, f"{path.name} contains {banned!r}"

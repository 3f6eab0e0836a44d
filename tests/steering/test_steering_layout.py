"""steering/ is a core, three product rooms (rules, ab, mentor) and the file formats (io): a room depends on
the core and io, never on another room; io depends on nothing in steering."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "steering"
ROOMS = ("rules", "ab", "mentor")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


@pytest.mark.parametrize("room", [*ROOMS, "io"])
def test_a_room_imports_the_core_and_itself_but_no_other_room(room):
    others = [f"metalens.steering.{r}" for r in ROOMS if r != room]
    if room == "io":
        others += ["metalens.steering.vector", "metalens.steering.generate", "metalens.steering.fluency"]
    for path in (ROOT / room).glob("*.py"):
        bad = [m for m in imported_modules(path) if any(m == o or m.startswith(o + ".") for o in others)]
        assert not bad, f"{path} imports {bad}"


def test_the_core_imports_no_room_but_the_file_formats():
    for path in ROOT.glob("*.py"):
        if path.name == "__init__.py" or path.name.endswith("cli.py"):  # the CLI modules wire the rooms together
            continue
        rooms = [m for m in imported_modules(path) if any(m.startswith(f"metalens.steering.{r}") for r in ROOMS)]
        assert not rooms, f"{path} imports {rooms}"


def test_no_module_is_over_400_lines():
    long = {str(p): n for p in ROOT.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not long


@pytest.mark.parametrize("package", ["metalens.steering", *(f"metalens.steering.{r}" for r in (*ROOMS, "io"))])
def test_every_public_name_resolves_and_is_documented(package):
    module = importlib.import_module(package)
    assert module.__doc__ and len(module.__all__) == len(set(module.__all__))
    for name in module.__all__:
        obj = getattr(module, name)
        assert getattr(obj, "__doc__", None), f"{package}.{name} has no docstring"


def test_there_is_one_mentor():
    import metalens.steering as steering

    assert steering.mentor.__name__ == "metalens.steering.mentor"  # the package; the rule book's loop is refine_rules
    assert not (ROOT / "mentor.py").exists() and not list(ROOT.glob("mentor_*.py"))

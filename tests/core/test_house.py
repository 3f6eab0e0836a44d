"""House rules checked over the whole repository: no code from files, no private imports across modules, small modules."""
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIRS = ("metalens", "tasks", "probes", "introspect", "steering", "circuits", "analyses")
MAX_LINES = 400
# Ways a file could hand us code to run: unpickling (torch.load without weights_only, pickle, numpy's
# allow_pickle) and eval/exec of text.
UNSAFE = re.compile(r"weights_only\s*=\s*False|pickle\.loads?\(|allow_pickle\s*=\s*True|(?<![\w.])(eval|exec)\(")
PRIVATE_IMPORT = r"from metalens\.[a-z_.]+ import _|import metalens\.[a-z_.]+\._"


def _tracked(*patterns: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", *patterns], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.split()
    return [ROOT / p for p in out if (ROOT / p).is_file()]


def unsafe_lines(text: str) -> list[str]:
    """Lines of `text` that could run code read from a file."""
    return [line.strip() for line in text.splitlines() if UNSAFE.search(line)]


def test_the_unsafe_pattern_catches_unpickling_and_eval_but_not_model_eval():
    assert unsafe_lines("state = torch.load(path, weights_only=False)\nx = eval(text)\npickle.load(f)")
    assert not unsafe_lines("model.eval()\nhf.eval().requires_grad_(False)\nspec.loader.exec_module(m)")


def test_no_code_outside_tests_unpickles_or_evals():
    found = {str(p.relative_to(ROOT)): unsafe_lines(p.read_text(errors="replace"))
             for p in _tracked("*.py", "*.sh", "*.ipynb") if not p.relative_to(ROOT).parts[0] == "tests"}
    assert not {k: v for k, v in found.items() if v}


def test_no_private_name_is_imported_across_modules_outside_tests():
    out = subprocess.run(["git", "grep", "-nE", PRIVATE_IMPORT, "--", ".", ":!tests"], cwd=ROOT, capture_output=True,
                         text=True).stdout
    assert out == ""


def test_no_module_of_the_package_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in _tracked(*(f"{d}/*.py" for d in PACKAGE_DIRS))
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long

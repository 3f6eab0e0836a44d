"""The docs stay true: the API reference builds, links resolve, named APIs exist, READMEs stay short."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AREAS = ("tasks", "probes", "introspect", "steering", "circuits", "analyses")
# The user guides: the root README and one per area, each kept to one sitting's read.
GUIDES = ["README.md"] + [f"{area}/README.md" for area in ("probes", "introspect", "steering", "circuits", "analyses")]
MAX_GUIDE_LINES = 150


def tracked_markdown() -> list[Path]:
    """Every markdown file git tracks (or would, once added), notebooks' folders included."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.md"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / line for line in out.splitlines() if line and (ROOT / line).is_file()]


def api_modules() -> list[str]:
    """The modules `make docs` hands pdoc, read from the Makefile so the test builds what it builds."""
    match = re.search(r"^API_MODULES :=(.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert match, "Makefile lost its API_MODULES line (the modules `make docs` documents)"
    return match.group(1).split()


def test_api_reference_builds_and_its_index_names_every_area(tmp_path):
    pytest.importorskip("pdoc", reason="pdoc is in the dev extra: pip install -e '.[dev]'")
    modules = api_modules()
    assert {f"metalens.{area}" for area in AREAS} <= set(modules)
    run = subprocess.run([sys.executable, "-m", "pdoc", "--docformat", "markdown", "--output-directory",
                          str(tmp_path), *modules], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"pdoc failed:\n{run.stdout}\n{run.stderr}"
    index = (tmp_path / "metalens.html").read_text()
    for area in AREAS:
        assert f'href="metalens/{area}.html"' in index, f"the API index does not link metalens.{area}"
        assert (tmp_path / "metalens" / f"{area}.html").is_file()


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def prose(text: str) -> str:
    """Markdown without its fenced code blocks (a link-like string in code is not a link)."""
    return FENCE.sub("", text)


def test_every_relative_markdown_link_resolves():
    broken = []
    for md in tracked_markdown():
        for target in LINK.findall(prose(md.read_text())):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # a URL or an anchor in the same page
            path = target.split("#", 1)[0]
            if not (md.parent / path).exists():
                broken.append(f"{md.relative_to(ROOT)}: ({target})")
    assert not broken, "broken relative links:\n" + "\n".join(broken)


DOTTED = re.compile(r"`(metalens(?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


def resolves(dotted: str) -> bool:
    """Whether `metalens.a.b.c` names a module, or an attribute reached from the longest importable module."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def named_apis(md: Path) -> set[str]:
    """The dotted `metalens.*` names a markdown file writes in inline code (fenced blocks left out)."""
    return set(DOTTED.findall(prose(md.read_text())))


def test_every_dotted_metalens_name_in_the_docs_resolves():
    # The changelog is history: it names the APIs of their day, old names of renames included.
    pages = [md for md in tracked_markdown() if md.name != "CHANGELOG.md"]
    stale = [f"{md.relative_to(ROOT)}: `{name}`" for md in pages for name in sorted(named_apis(md)) if not resolves(name)]
    assert not stale, "docs name APIs that do not exist (renamed or removed?):\n" + "\n".join(stale)


@pytest.mark.parametrize("guide", GUIDES)
def test_user_guides_stay_short(guide):
    lines = (ROOT / guide).read_text().count("\n")
    assert lines <= MAX_GUIDE_LINES, f"{guide} has {lines} lines; keep it <= {MAX_GUIDE_LINES} (findings go to results/)"

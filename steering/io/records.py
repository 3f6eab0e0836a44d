"""Line numbers for JSONL records, so a bad value in a user's pairs or queries file is reported as file:line."""
from __future__ import annotations

from pathlib import Path

from metalens.data import read_text_file


def record_lines(path: str | Path) -> list[int]:
    """The line number of each record `metalens.read_jsonl(path)` returns (it skips blank lines)."""
    return [n for n, line in enumerate(read_text_file(path, "JSONL file").splitlines(), 1) if line.strip()]

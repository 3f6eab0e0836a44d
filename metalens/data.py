"""Reading texts and labelled JSONL and CSV files, with errors that point at the bad line."""
from __future__ import annotations

import csv
import json
from pathlib import Path


def read_text_file(path: str | Path, what: str = "file") -> str:
    """The UTF-8 text of `path`; a missing path, a folder or non-UTF-8 bytes is one error naming the file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what.capitalize()} {path} does not exist.")
    if path.is_dir():
        raise ValueError(f"{path} is a directory: give the {what} itself.")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise ValueError(f"{path}:{line} is not UTF-8 text (byte {err.start}): save the {what} as UTF-8.") from None


def read_texts(path: str | Path) -> list[str]:
    """One text per non-empty line of a UTF-8 file."""
    path = Path(path)
    texts = [line.rstrip("\n") for line in read_text_file(path, "texts file").splitlines() if line.strip()]
    if not texts:
        raise ValueError(f"{path} has no texts: write one text per line.")
    return texts


def read_jsonl(path: str | Path, required: tuple[str, ...] = ()) -> list[dict]:
    """Records of a JSONL file; each must hold the `required` keys."""
    path = Path(path)
    records = []
    for number, line in enumerate(read_text_file(path, "JSONL file").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number} is not valid JSON ({err.msg}).") from err
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{number} is a JSON {type(record).__name__}; each line must be an object.")
        missing = [k for k in required if k not in record]
        if missing:
            raise ValueError(f"{path}:{number} lacks key(s) {missing}; each line needs {list(required)}.")
        records.append(record)
    if not records:
        raise ValueError(f"{path} holds no records.")
    return records


def read_csv(path: str | Path, required: tuple[str, ...] = ()) -> list[dict]:
    """Rows of a CSV file with a header line, as {column: string}; the header must name the `required` columns."""
    path = Path(path)
    read_text_file(path, "CSV file")  # missing, a folder, not UTF-8: one error naming the file
    with path.open(encoding="utf-8-sig", newline="") as f:  # -sig: drop a BOM; newline="": quoted fields hold line breaks
        reader = csv.DictReader(f)
        header = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in required if c not in header]
        if missing:
            raise ValueError(f"{path} has header {header}, without column(s) {missing}; it needs {list(required)}.")
        reader.fieldnames = header
        rows = []
        for row in reader:
            if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
                continue
            short = [c for c in required if row.get(c) is None]
            if short:
                raise ValueError(f"{path}:{reader.line_num} has fewer fields than the header: no {short}.")
            rows.append(row)
    if not rows:
        raise ValueError(f"{path} holds no rows under its header.")
    return rows


def record_groups(records: list[dict], key: str = "group") -> list[str]:
    """One group id per record: its `key` field (a string or integer) where present, else a group
    of its own. Records of one group are near-copies (one action in several phrasings, say), so
    splits, cross-validation and prompts keep them together; files without the field are unchanged."""
    groups = []
    for number, record in enumerate(records, start=1):
        value = record.get(key)
        if value is None:
            groups.append(f"#{number}")  # '#' + line number: cannot collide with a given id unless it copies the form
        elif isinstance(value, (str, int)) and not isinstance(value, bool):
            groups.append(str(value))
        else:
            raise ValueError(f"Record {number} has {key}={value!r}; a group id must be a string or an integer.")
    return groups


def write_jsonl(path: str | Path, records: list[dict]) -> None:
    """Write records one JSON object per line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")

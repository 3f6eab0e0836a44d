"""Reading texts and labelled JSONL files, with errors that point at the bad line."""
from __future__ import annotations

import json
from pathlib import Path


def read_texts(path: str | Path) -> list[str]:
    """One text per non-empty line of a UTF-8 file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Texts file {path} does not exist.")
    texts = [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        raise ValueError(f"{path} has no texts: write one text per line.")
    return texts


def read_jsonl(path: str | Path, required: tuple[str, ...] = ()) -> list[dict]:
    """Records of a JSONL file; each must hold the `required` keys."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"JSONL file {path} does not exist.")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number} is not valid JSON ({err.msg}).") from err
        missing = [k for k in required if k not in record]
        if missing:
            raise ValueError(f"{path}:{number} lacks key(s) {missing}; each line needs {list(required)}.")
        records.append(record)
    if not records:
        raise ValueError(f"{path} holds no records.")
    return records


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

"""Text to train and score dictionaries on: the user's file, or English prose that ships with Python.

Without a file, the texts are the paragraphs of `pydoc_data.topics`, the Python language
reference's sections that `help()` prints, which every CPython install carries in its standard
library (about 465,000 characters of English technical prose, offline, no download). Their
licence is the Python Software Foundation License Agreement, under which Python and its
documentation are distributed. It is narrow (a programming-language manual), so for a
dictionary meant for general text bring your own with `--data`.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from metalens.data import read_csv, read_jsonl, read_texts

DEFAULT_SOURCE = ("Python's own help texts: the paragraphs of pydoc_data.topics (the language reference "
                  "sections that help() prints), in the standard library of every CPython install; "
                  "licence: Python Software Foundation License Agreement")
TEXT_FIELDS = ("text", "input", "prompt", "question")  # the first present field is a record's text
MIN_WORDS = 8  # shorter paragraphs are headings and code fragments, not prose


def _python_help_paragraphs() -> list[str]:
    try:
        from pydoc_data.topics import topics
    except ImportError:
        raise ModuleNotFoundError("This Python has no pydoc_data (its standard library was trimmed): pass your own "
                                  "English text with --data FILE (one text per line).") from None
    paragraphs = []
    for name in sorted(topics):
        for block in re.split(r"\n\s*\n", topics[name]):
            text = " ".join(block.split())
            # Prose, not code: enough words, and mostly letters and spaces.
            if len(text.split()) >= MIN_WORDS and sum(c.isalpha() or c.isspace() for c in text) > 0.85 * len(text):
                paragraphs.append(text)
    return paragraphs


def _record_text(record: dict, where: str) -> str:
    for key in TEXT_FIELDS:
        if isinstance(record.get(key), str) and record[key].strip():
            return record[key]
    raise ValueError(f"{where} has no text field: give each record one of {list(TEXT_FIELDS)} as a string.")


def read_corpus(path=None) -> tuple[list[str], str]:
    """(texts, where they come from): a file's texts, or Python's help paragraphs when `path` is None.

    .txt (or any other suffix): one text per non-empty line; .jsonl: each record's first field of
    `TEXT_FIELDS`; .csv: that column (the ETHICS csv's `input`, for one).
    """
    if path is None:
        return _python_help_paragraphs(), DEFAULT_SOURCE
    path = Path(path)
    if path.suffix == ".jsonl":
        texts = [_record_text(r, f"{path}:{i + 1}") for i, r in enumerate(read_jsonl(path))]
    elif path.suffix == ".csv":
        rows = read_csv(path)
        column = next((k for k in TEXT_FIELDS if rows and k in rows[0]), None)
        if rows and column is None:
            raise ValueError(f"{path}: no text column; name one of {list(TEXT_FIELDS)} in the header line.")
        texts = [row[column] for row in rows if row[column].strip()]
    else:
        texts = read_texts(path)
    if not texts:
        raise ValueError(f"{path} holds no texts: give it one text per line (or per record).")
    return texts, str(path)


def split_texts(texts: list[str], eval_share: float, seed: int, where: str = "the texts") -> tuple[list[str], list[str]]:
    """(train, held out): a seeded shuffle, `eval_share` of the texts (at least one each) held out."""
    if len(texts) < 2:
        raise ValueError(f"{where} holds {len(texts)} text, which cannot be split into training and held-out "
                         "texts: give at least two.")
    if not 0 < eval_share < 1:
        raise ValueError(f"eval_share must be between 0 and 1, not {eval_share}.")
    order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(seed)).tolist()
    n_held = min(max(1, round(eval_share * len(texts))), len(texts) - 1)
    return [texts[i] for i in sorted(order[n_held:])], [texts[i] for i in sorted(order[:n_held])]


def take_tokens(model, texts: list[str], n_tokens: int, max_length: int | None) -> tuple[list[str], int]:
    """(the shortest prefix of `texts` giving `n_tokens` tokens past BOS, or all of them; its token count)."""
    skip = 1 if model.tokenizer.bos_token_id is not None else 0
    taken, total = [], 0
    for start in range(0, len(texts), 256):
        chunk = texts[start:start + 256]
        ids = model.tokenizer(chunk, truncation=max_length is not None, max_length=max_length)["input_ids"]
        for text, row in zip(chunk, ids):
            if total >= n_tokens:
                return taken, total
            taken.append(text)
            total += max(len(row) - skip, 0)
    return taken, total

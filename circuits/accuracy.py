"""Accuracy of greedily generated answers to arithmetic problems (used by ablation checks)."""
from __future__ import annotations

import torch

import re

from metalens.tasks.arithmetic import Problem, grade

_NUM_RE = re.compile(r"-?\d+")


@torch.no_grad()
def generate(model, prompts: list[str], max_new_tokens: int = 32, batch_size: int = 16) -> list[str]:
    """Greedy completions of `prompts` (left-padded batches), cut at the first newline."""
    tok = model.tokenizer
    out = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        tok.padding_side = "left"  # generation appends on the right, so pad on the left
        try:
            batch = tok(chunk, return_tensors="pt", padding=True).to(model.device)
        finally:
            tok.padding_side = "right"
        ids = model.hf.generate(
            **batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id,
            eos_token_id=_stop_ids(tok),  # a newline ends the answer line: stop there, it saves most of the cost
        )
        new = ids[:, batch["input_ids"].shape[1] :]
        out += [t.split("\n")[0] for t in tok.batch_decode(new, skip_special_tokens=True)]
    return out


def _stop_ids(tok) -> list[int]:
    ids = [tok.eos_token_id]
    newline = tok.convert_tokens_to_ids("\n")
    if isinstance(newline, int) and newline != tok.unk_token_id:
        ids.append(newline)
    return ids


def last_number(text: str) -> int | None:
    """The last integer in `text` (lenient grading: a base model writes '5 + 9 = 14')."""
    found = _NUM_RE.findall(text)
    return int(found[-1]) if found else None


def generation_accuracy(model, problems: list[Problem], max_new_tokens: int = 32, batch_size: int = 16) -> dict:
    """{'accuracy', 'lenient_accuracy', 'by_level', 'completions'}: graded greedy answers.

    `accuracy` uses metalens.tasks.arithmetic.grade ('The answer is N', else the first number);
    `lenient_accuracy` also accepts the last number of the line.
    """
    completions = generate(model, [p.prompt for p in problems], max_new_tokens, batch_size)
    correct = [grade(p, c) for p, c in zip(problems, completions)]
    lenient = [ok or last_number(c) == p.answer for p, c, ok in zip(problems, completions, correct)]
    by_level: dict[int, list[bool]] = {}
    for p, ok in zip(problems, correct):
        by_level.setdefault(p.level, []).append(ok)
    return {
        "accuracy": sum(correct) / max(len(correct), 1),
        "lenient_accuracy": sum(lenient) / max(len(lenient), 1),
        "by_level": {lvl: sum(v) / len(v) for lvl, v in sorted(by_level.items())},
        "completions": completions,
        "n": len(problems),
    }

"""Rollouts from the model's own samples, graded, stored resumably as JSONL + manifest."""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from metalens.tasks.arithmetic import Problem, extract_answer, make_problems
from metalens.tasks.words import make_word_problems
from metalens.introspect.rollouts.decode import sample_many
from metalens.introspect.rollouts.planted import apply_flips, read_planted
from metalens.artifact import read_json
from metalens.store import sha256 as file_sha256

# /2: samples drawn by `metalens.generate` with a per-question seed. A /1 store (the old sampling
# loop) cannot be resumed draw for draw, so an unfinished one is refused rather than mixed.
FORMAT = "metalens.introspect.rollouts.store/2"
N_SHOTS = 3
SHOT_SEED = 10_000  # few-shot examples come from their own seed, never from the task's problems
TASKS = ("arithmetic", "words")  # built-in generators (a user JSONL is the third kind of task)


@dataclass(frozen=True)
class Question:
    """A prompt with a verifiable integer answer (arithmetic, or a user's JSONL line)."""

    prompt: str
    answer: int
    level: int = 0

    @classmethod
    def from_problem(cls, problem: Problem) -> "Question":
        """The question of a `metalens.tasks.arithmetic` problem."""
        return cls(problem.prompt, problem.answer, problem.level)


def few_shot_prefix(n_shots: int = N_SHOTS, task: str = "arithmetic") -> str:
    """Worked examples of `task` that teach a base model the answer format and to end with a newline."""
    if task not in TASKS:
        raise ValueError(f"Unknown task '{task}': use one of {TASKS}.")
    make = make_problems if task == "arithmetic" else make_word_problems
    shots = make(n_shots, levels=(1, 2, 3), seed=SHOT_SEED)
    return "".join(p.prompt + p.solution + "\n\n" for p in shots)


def arithmetic_questions(n: int, levels=(1, 2, 3), seed: int = 0) -> list[Question]:
    """`n` arithmetic questions cycling through `levels` (see metalens.tasks.arithmetic.LEVELS)."""
    return [Question.from_problem(p) for p in make_problems(n, levels=levels, seed=seed)]


def word_questions(n: int, levels=(1, 2, 3), seed: int = 0) -> list[Question]:
    """`n` word problems cycling through `levels` (see metalens.tasks.words.LEVELS), same grader."""
    return [Question(p.prompt, p.answer, p.level) for p in make_word_problems(n, levels=levels, seed=seed)]


def task_questions(task: str, n: int, levels=(1, 2, 3), seed: int = 0) -> list[Question]:
    """`n` questions of a built-in generator: 'arithmetic' or 'words'."""
    if task not in TASKS:
        raise ValueError(f"Unknown task '{task}': use one of {TASKS} (or a JSONL file of questions).")
    return (arithmetic_questions if task == "arithmetic" else word_questions)(n, levels, seed)


def read_questions(path: str | Path) -> list[Question]:
    """Questions from a JSONL file of {"prompt": ..., "answer": int} lines."""
    from metalens.data import read_jsonl

    return [Question(r["prompt"], int(r["answer"]), int(r.get("level", 0)))
            for r in read_jsonl(path, required=("prompt", "answer"))]


def grade(question: Question, completion: str) -> int:
    """1 when the completion's extracted answer equals the question's, else 0."""
    return int(extract_answer(completion) == question.answer)


def _append(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())  # a line is on disk before the next prompt starts


def _write_manifest(out: Path, manifest: dict) -> None:
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, out / "manifest.json")  # atomic


def _read_complete_lines(path: Path) -> list[dict]:
    """Records of whole lines; a torn last line (a run killed mid-write) is cut off the file."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    good_end, records = 0, []
    for line in raw.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
        good_end += len(line)
    if good_end != len(raw):
        with open(path, "r+b") as handle:
            handle.truncate(good_end)
    return records


def generate_rollouts(
    model,
    questions: list[Question],
    out: str | Path,
    n_samples: int = 4,
    max_new_tokens: int = 48,
    temperature: float = 1.0,
    seed: int = 0,
    prefix: str | None = None,
    progress: bool = False,
    min_p: float | None = None,
    batch_questions: int = 1,
) -> Path:
    """Sample `n_samples` completions per question, grade them, append one JSONL line per question.

    `min_p` (with `temperature`) is min-p sampling (ZIP-RC's rollouts: T = 1.0, min_p = 0.1).
    `batch_questions` questions share one batched generation call (their `n_samples` rows each);
    the seed is per chunk of questions (chunks fixed by index), so a resumed run redraws an
    unfinished chunk exactly. Resumable: rerunning the same call skips the questions already
    written, and a line torn by a killed run is dropped and redone. The manifest says
    `complete: true` only at the end; `load_rollouts` refuses unfinished stores. A different
    config in `out` raises. Returns `out`.
    """
    if batch_questions < 1:
        raise ValueError(f"batch_questions={batch_questions}: put at least one question in each generation call.")
    if not questions or n_samples < 1 or max_new_tokens < 1:
        raise ValueError(f"Need at least one question ({len(questions)}), sample ({n_samples}) and new token "
                         f"({max_new_tokens}) to draw rollouts.")
    if not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature={temperature}: use a finite number >= 0 (0 decodes greedily).")
    if min_p is not None and not 0 <= min_p <= 1:
        raise ValueError(f"min_p={min_p}: use a share of the top token's probability in [0, 1].")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    prefix = few_shot_prefix() if prefix is None else prefix
    config = {"format": FORMAT, "model": model.name, "revision": model.revision, "n_samples": n_samples,
              "max_new_tokens": max_new_tokens, "temperature": temperature, "seed": seed, "prefix": prefix,
              "tasks_sha256": hashlib.sha256(json.dumps([t.__dict__ for t in questions]).encode()).hexdigest(),
              "n_tasks": len(questions)}
    # Written only when set, so stores made before these options existed keep their config.
    if min_p is not None:
        config["min_p"] = min_p
    if batch_questions != 1:
        config["batch_questions"] = batch_questions
    if (out / "manifest.json").exists():
        old = read_json(out / "manifest.json", "rollout manifest")
        changed = sorted(k for k in config if old.get(k) != config[k])
        if changed == ["format"] and old.get("complete"):
            raise ValueError(f"{out} holds finished rollouts of an older format ({old.get('format')}): reuse them "
                             "as they are with --rollouts (TrainConfig.rollouts), or delete the directory to "
                             "sample them again.")
        if changed:
            raise ValueError(f"{out} holds rollouts made with other settings ({changed}). "
                             "Use another --out directory, or delete this one to start over.")
    _write_manifest(out, {**config, "complete": False})
    done = {r["task_index"] for r in _read_complete_lines(out / "rollouts.jsonl")}
    chunks = range(0, len(questions), batch_questions)
    if progress:
        from tqdm import tqdm

        chunks = tqdm(chunks, desc="rollouts", unit="call")
    for first in chunks:
        indices = list(range(first, min(first + batch_questions, len(questions))))
        if all(i in done for i in indices):
            continue
        prompts = [model.tokenizer(prefix + questions[i].prompt)["input_ids"] for i in indices]
        # One seed per chunk of questions (per question when batch_questions = 1): a resumed run
        # draws exactly what an uninterrupted one would.
        drawn = sample_many(model, prompts, n_samples, max_new_tokens, temperature, seed=seed * 1_000_003 + first,
                            min_p=min_p)
        for index, prompt_ids, samples in zip(indices, prompts, drawn):
            if index in done:
                continue
            question = questions[index]
            texts = [model.tokenizer.decode(t, skip_special_tokens=True) for t in samples.tokens]
            _append(out / "rollouts.jsonl", {
                "task_index": index, "prompt": question.prompt, "answer": question.answer, "level": question.level,
                "prompt_ids": prompt_ids, "completions": samples.tokens, "texts": texts,
                "truncated": samples.truncated, "rewards": [grade(question, t) for t in texts],
            })
    _write_manifest(out, {**config, "complete": True, "sha256": file_sha256(out / "rollouts.jsonl")})
    return out


def load_rollouts(out: str | Path) -> list[dict]:
    """The task records of a finished rollout store (raises if it is unfinished or altered).

    Rewards are re-graded from the stored texts with the current grader (`grade`), so a store
    written under an older grader cannot carry its grading into a result; `regraded` on a record
    counts the samples whose stored reward the current grader changed. A store with planted label
    noise (`planted.plant_label_noise`) has the samples its `planted.json` names flipped after that.
    """
    out = Path(out)
    manifest_path = out / "manifest.json"
    if not manifest_path.exists():
        raise FileNotFoundError(f"No manifest.json in {out}: generate rollouts first.")
    manifest = read_json(manifest_path, "rollout manifest")
    if not manifest.get("complete"):
        raise ValueError(f"The rollouts in {out} are unfinished (a run was stopped): "
                         "rerun the same command to resume them.")
    if file_sha256(out / "rollouts.jsonl") != manifest["sha256"]:
        raise ValueError(f"{out}/rollouts.jsonl does not match its manifest checksum: regenerate it.")
    records = sorted(_read_complete_lines(out / "rollouts.jsonl"), key=lambda r: r["task_index"])
    for r in records:
        question = Question(r["prompt"], r["answer"], r.get("level", 0))
        rewards = [grade(question, text) for text in r["texts"]]
        r["regraded"] = sum(a != b for a, b in zip(rewards, r["rewards"]))
        r["rewards"] = rewards
    # A store made by `planted.plant_label_noise` flips a known share of labels after grading.
    return apply_flips(records, read_planted(out))


def solve_rates(records: list[dict]) -> dict[int, float]:
    """Share of correct samples per difficulty level."""
    by_level: dict[int, list[int]] = {}
    for r in records:
        by_level.setdefault(r["level"], []).extend(r["rewards"])
    return {lv: sum(v) / len(v) for lv, v in sorted(by_level.items())}


def is_complete(rollouts: Path) -> bool:
    """True when `rollouts` is a finished rollout store."""
    manifest = Path(rollouts) / "manifest.json"
    return manifest.exists() and bool(json.loads(manifest.read_text()).get("complete"))


def rollouts_settings(rollouts: str | Path) -> dict:
    """How a rollout store was sampled: its manifest (max_new_tokens, temperature, min_p, ...)."""
    return read_json(Path(rollouts) / "manifest.json", "rollout manifest")

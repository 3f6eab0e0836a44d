"""Every verb answers a bad input with one line naming the flag or file, exit 2, and leaves --out usable.

The cases are rows of data: a verb's good command (GOOD), the flags a row changes, and what the
error line must name. Each row runs `metalens.cli.main` in-process on `random:tiny-gemma3` and
checks: exit code 2, exactly one line on stderr, no traceback, that line names the flag or file,
and nothing under --out but the `metalens-run.json` marker. Then, per verb, the good command
succeeds in the same --out the bad rows ran into. Other verbs join by adding GOOD entries and rows.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from metalens.cli import main
from metalens.options import RUN_MARKER
from metalens.sae import SAE

MODEL = ["--model", "random:tiny-gemma3", "--device", "cpu"]

# The good command of each verb: flag -> value(s) (a list for nargs / repeated flags); "" is the positional.
GOOD: dict[str, dict[str, object]] = {
    "capture": {"--site": ["blocks.1.hook_resid_post"], "--texts": "{texts}", "--out": "{out}", "--batch-size": "2"},
    "merge": {"": "{parts}"},
    "demo": {"--out": "{out}", "--area": "probes"},
    "posttrain": {"--out": "{out}", "--steps": "2", "--stop-after": "1", "--n-eval": "2", "--batch-size": "1",
                  "--train-blocks": "1", "--full": None, "--no-merge": None},  # full: no peft import
    "atlas": {"--out": "{out}", "--n-arithmetic": "4", "--n-facts": "0", "--n-shots": "0", "--n-boot": "10",
              "--cv": "2", "--layers": ["1"], "--no-reporting": None, "--data": "{items}"},
    "lens": {"--prompt": "2 + 2 =", "--out": "{out}"},
    "sae train": {"--site": "blocks.1.hook_resid_post", "--data": "{sae_texts}", "--tokens": "200", "--width": "16",
                  "--k": "4", "--steps": "2", "--train-batch-size": "32", "--eval-share": "0.25", "--out": "{out}"},
    "sae eval": {"--sae": "{sae_dir}", "--data": "{sae_texts}", "--eval-share": "0.25", "--out": "{out}"},
}
REPEATED = {"--site"}  # flags given once per value (the other lists are nargs="+": one flag, several values)
LOADS_MODEL = {"capture", "demo", "posttrain", "atlas", "lens", "sae train", "sae eval"}
# Verbs whose --out is not yet checked with `check_out` before the model loads (their areas land it in the same merge).
OUT_UNCHECKED = {"lens"}


@dataclass(frozen=True)
class Case:
    """One bad input: `verb`'s good command with `change` applied ({flag: value, or DROP}); `names` must be in the error."""

    verb: str
    id: str
    change: dict = field(default_factory=dict)
    names: str = ""
    fix_in_same_out: bool = True  # False where the fault is the --out itself


DROP = object()
NUMBERS = {  # (flag, bad values) per verb: zero, negative, NaN, huge, not a number
    "capture": [("--batch-size", ["0", "-3", "nan", "1e9", "99999999999"]), ("--max-length", ["0", "-5", "1e30"]),
                ("--num-shards", ["0"]), ("--shard-index", ["-1", "5"])],
    "posttrain": [("--batch-size", ["0", "-1", "x"]), ("--steps", ["0", "-5", "1e9"]), ("--lr", ["nan", "-1", "0", "1e30", "inf"]),
                  ("--save-every", ["0"]), ("--n-eval", ["0", "1", "1000000"]), ("--train-blocks", ["0", "-2", "some"]),
                  ("--levels", ["9", "0"]), ("--group-size", ["1"]), ("--temperature", ["0", "nan"]),
                  ("--kl-coef", ["-1"]), ("--stop-after", ["0", "3"]), ("--lora-rank", ["0"]),
                  ("--sample-tokens", ["0"]), ("--heldout-seed", ["-1"]), ("--seed", ["-1", "1.5"])],
    "atlas": [("--n-arithmetic", ["-1"]), ("--n-facts", ["41", "-1"]), ("--cv", ["1", "0"]), ("--n-boot", ["0"]),
              ("--probe-c", ["0", "nan", "-1"]), ("--n-shots", ["9"]), ("--n-bins", ["0"]), ("--levels", ["6"]),
              ("--reporting-draws", ["0"]), ("--reporting-n", ["-1"]), ("--batch-size", ["0"]), ("--layers", ["-1", "x"])],
    "sae train": [("--tokens", ["0", "-1", "1e9"]), ("--width", ["0", "nan"]), ("--k", ["0", "-4"]), ("--steps", ["0", "-2"]),
                  ("--lr", ["0", "nan", "inf", "2"]), ("--eval-share", ["0", "1", "nan"]), ("--eval-texts", ["0"]),
                  ("--max-length", ["1", "0"]), ("--train-batch-size", ["0"]), ("--checkpoint-every", ["0"]),
                  ("--l1-coefficient", ["-1"]), ("--l0-coefficient", ["nan"]), ("--seed", ["-1", "1.5"])],
    "sae eval": [("--eval-share", ["0", "-0.5"]), ("--batch-size", ["0"]), ("--eval-texts", ["0"]), ("--seed", ["-1"])],
}


def _rows() -> list[Case]:
    rows = [Case(verb, f"{flag}={value}", {flag: [value] if isinstance(GOOD[verb].get(flag), list) else value}, flag)
            for verb, flags in NUMBERS.items() for flag, values in flags for value in values]
    for verb in sorted(LOADS_MODEL):
        rows += [Case(verb, "unknown model", {"--model": "no-such-model"}, "no-such-model"),
                 Case(verb, "model is a plain folder", {"--model": "{folder}"}, "{folder}"),
                 Case(verb, "model is a missing path", {"--model": "{missing}"}, "{missing}")]
        if verb not in OUT_UNCHECKED:
            rows += [Case(verb, "out is a file", {"--out": "{a_file}"}, "--out", fix_in_same_out=False),
                     Case(verb, "out holds another verb's run", {"--out": "{other_run}"}, "--out", fix_in_same_out=False)]
    for flag, verb in (("--texts", "capture"), ("--data", "atlas"), ("--data", "sae train"), ("--data", "sae eval")):
        rows += [Case(verb, f"{flag} missing", {flag: "{missing}"}, flag),
                 Case(verb, f"{flag} empty", {flag: "{empty}"}, "{empty}"),
                 Case(verb, f"{flag} not UTF-8", {flag: "{binary}"}, "{binary}"),
                 Case(verb, f"{flag} is a folder", {flag: "{folder}"}, flag)]
    rows += [
        Case("capture", "texts not given", {"--texts": DROP}, "--texts"),
        Case("capture", "site not given", {"--site": DROP}, "--site"),
        Case("posttrain", "out not given", {"--out": DROP}, "--out"),
        Case("atlas", "out not given", {"--out": DROP}, "--out"),
        Case("capture", "site past the last block", {"--site": ["blocks.9.hook_resid_post"]}, "blocks.9"),
        Case("capture", "unknown site", {"--site": ["blocks.0.hook_nothing"]}, "blocks.0.hook_nothing"),
        Case("capture", "positions not a choice", {"--positions": "first"}, "--positions"),
        Case("atlas", "layer past the last block", {"--layers": ["99"]}, "99"),
        Case("atlas", "layers mix numbers and all", {"--layers": ["1", "all"]}, "--layers"),
        Case("atlas", "data line not JSON", {"--data": "{bad_json}"}, "{bad_json}:2"),
        Case("atlas", "data line lacks answer", {"--data": "{no_answer}"}, "{no_answer}:1"),
        Case("atlas", "data choices not a list", {"--data": "{choices_text}"}, "{choices_text}:1"),
        Case("atlas", "data answer out of range", {"--data": "{answer_range}"}, "{answer_range}:1"),
        Case("atlas", "head folder missing", {"--head": "{missing}"}, "--head"),
        Case("atlas", "probe-at not a choice", {"--probe-at": "middle"}, "--probe-at"),
        Case("demo", "unknown area", {"--area": "probs"}, "--area"),
        Case("posttrain", "unknown method", {"--method": "dpo"}, "--method"),
        Case("sae train", "site not given", {"--site": DROP}, "--site"),
        Case("sae train", "out not given", {"--out": DROP}, "--out"),
        Case("sae train", "site past the last block", {"--site": "blocks.9.hook_resid_post"}, "blocks.9"),
        Case("sae train", "unknown architecture", {"--arch": "gated"}, "--arch"),
        Case("sae train", "k above width", {"--k": "64"}, "--k"),
        Case("sae train", "init-b-dec not a choice", {"--init-b-dec": "median"}, "--init-b-dec"),
        Case("sae train", "one text cannot be split", {"--data": "{one_text}"}, "{one_text}"),
        Case("sae train", "csv without a text column", {"--data": "{no_text_csv}"}, "{no_text_csv}"),
        Case("sae train", "jsonl record without text", {"--data": "{no_text_jsonl}"}, "{no_text_jsonl}:1"),
        Case("sae eval", "sae not given", {"--sae": DROP}, "--sae"),
        Case("sae eval", "sae folder missing", {"--sae": "{missing}"}, "--sae"),
        Case("sae eval", "sae folder holds no dictionary", {"--sae": "{folder}"}, "{folder}"),
        Case("sae eval", "sae of another model's width", {"--sae": "{sae_narrow}"}, "{sae_narrow}"),
        Case("sae eval", "sae at a site the model lacks", {"--sae": "{sae_deep}"}, "blocks.9"),
        Case("merge", "folder missing", {"": "{missing}"}, "{missing}"),
        Case("merge", "a file, not a folder", {"": "{a_file}"}, "{a_file}"),
        Case("merge", "folder without parts", {"": "{folder}"}, "{folder}"),
        Case("merge", "part manifest malformed", {"": "{bad_parts}"}, "{bad_parts}"),
    ]
    return rows


ROWS = _rows()
FIRST_VERBS = set(GOOD)

# --- every other verb (#27): its good command, numbers and rows, merged into the tables above ---------------

LLAMA = ["--model", "random:tiny-llama", "--device", "cpu"]  # a chat template, for the verbs that prompt as a chat
POS = ["0", "-2", "nan", "x", "2.5"]  # bad for a positive integer flag
NONNEG = ["-1", "nan", "inf", "x"]
STRENGTHS = ["1e30", "nan", "-101", "x"]
GOOD_MORE: dict[str, dict[str, object]] = {
    "probe": {"--data": "{probe_data}", "--layers": ["1"], "--out": "{out}"},
    "neurofeedback": {"--quick": None, "--data": "{probe_data}", "--layers": ["1"], "--draws": "2", "--pcs": "1",
                      "--n-values": "0,2", "--max-sentences": "20", "--implicit-trials": "2", "--explicit-trials": "1",
                      "--control-examples": "2", "--out": "{out}"},
    "heads": {"--task": "induction", "--n": "2", "--methods": ["attribution"], "--no-detect": None, "--out": "{out}"},
    "emergent-heads": {"--base": MODEL[1], "--post": "{post}", "--task": "induction", "--n": "2", "--n-test": "2",
                       "--n-boot": "0", "--n-edges": "4", "--ig-steps": "1", "--n-problems": "0",
                       "--max-checkpoints": "1", "--out": "{out}"},
    "lens": {"--prompt": "2 + 2 =", "--layers": ["1"], "--out": "{out}"},
    "introspect rollouts": {"--task": "words", "--n-tasks": "2", "--levels": ["1"], "--n-samples": "2",
                            "--max-new-tokens": "4", "--out": "{out}"},
    "introspect train": {"--rollouts": "{rollouts}", "--steps": "5", "--test-fraction": "0.5", "--out": "{out}"},
    "introspect eval": {"--train": "{train}", "--fractions": ["0", "1"], "--no-verbal": None, "--n-shuffles": "1",
                        "--out": "{out}"},
    "introspect compare": {"--heads": ["{train}/head", "{train}/head"], "--n-boot": "10", "--out": "{out}"},
    "introspect sample": {"--train": "{train}", "--alphas": ["0"], "--no-branch": None, "--out": "{out}"},
    "steer": {"--rule": "ocean", "--layers": ["1"], "--strengths": ["1"], "--prompts": "{prompts}", "--pairs": "{pairs}",
              "--max-new-tokens": "4", "--n-select": "2", "--n-validate": "0", "--out": "{out}"},
    "steer-ab": {"--data": "{ab_data}", "--layers": ["1"], "--strengths": ["0", "1"], "--max-items": "10",
                 "--open-items": "0", "--max-new-tokens": "4", "--out": "{out}"},
    "mentor": {"--layers": ["1"], "--rounds": "0", "--strengths": ["1"], "--max-per-domain": "3", "--max-new-tokens": "4",
               "--reflect-tokens": "0", "--out": "{out}"},
}
GOOD.update(GOOD_MORE)
LOADS_MODEL |= set(GOOD_MORE) - {"emergent-heads"}  # emergent-heads names its model --base
OUT_UNCHECKED.discard("lens")
CHAT_VERBS = {"steer-ab", "mentor"}
NUMBERS.update({
    "probe": [("--seed", NONNEG), ("--layers", ["-1", "x", "1.5"])],
    "neurofeedback": [("--draws", ["0", "1", "nan"]), ("--pcs", ["0,9999", "0", "1,1", "x"]),
                      ("--n-values", ["-2,4", "nan"]), ("--max-sentences", ["3", "-5", "x"]),
                      ("--implicit-trials", POS), ("--explicit-trials", POS), ("--control-examples", POS),
                      ("--seed", NONNEG), ("--layers", ["-1", "x"])],
    "heads": [("--n", POS), ("--ig-steps", POS), ("--seed", NONNEG)],
    "emergent-heads": [("--n", POS), ("--n-test", POS), ("--n-boot", NONNEG), ("--n-edges", POS), ("--ig-steps", POS),
                       ("--n-problems", NONNEG), ("--own-tokens", POS), ("--max-checkpoints", NONNEG),
                       ("--seed", NONNEG)],
    "lens": [("--layers", ["-1", "x", "1e30"])],
    "introspect rollouts": [("--n-tasks", POS), ("--n-samples", POS), ("--max-new-tokens", POS),
                            ("--temperature", ["nan", "-1", "inf", "x"]), ("--min-p", ["2", "-0.1", "nan"]),
                            ("--batch-questions", POS), ("--levels", ["9", "0", "x"]), ("--seed", NONNEG)],
    "introspect train": [("--steps", POS), ("--head-steps", POS), ("--lr", ["0", "-1", "nan", "inf"]),
                         ("--kl-coef", ["-1", "nan"]), ("--warmup", NONNEG), ("--accum", POS), ("--batch-size", POS),
                         ("--grad-clip", ["-1", "nan"]), ("--top-k", POS), ("--n-length-bins", POS),
                         ("--value-window", POS), ("--n-value-states", ["1", "0", "nan"]),
                         ("--test-fraction", ["0", "1", "nan", "-0.5"]), ("--seed", NONNEG)],
    "introspect eval": [("--fractions", ["1.5", "-0.1", "nan"]), ("--cv", ["1", "-1", "nan"]),
                        ("--n-shuffles", POS), ("--seed", NONNEG)],
    "introspect compare": [("--n-boot", POS), ("--seed", NONNEG)],
    "introspect sample": [("--alphas", ["nan", "-1", "inf"]), ("--beta", ["inf", "-1", "nan"]), ("--every", POS),
                          ("--live", NONNEG), ("--live-alphas", ["nan", "-1"]), ("--cv", ["1", "nan"]),
                          ("--utility", NONNEG), ("--utility-alphas", ["nan", "-1"]),
                          ("--utility-betas", ["-0.1", "nan"]), ("--seed", NONNEG)],
    "steer": [("--strengths", STRENGTHS), ("--rounds", NONNEG), ("--max-new-tokens", POS), ("--n-select", POS),
              ("--n-validate", NONNEG), ("--layers", ["-1", "x"])],
    "steer-ab": [("--strengths", STRENGTHS), ("--max-items", POS), ("--open-items", NONNEG),
                 ("--max-new-tokens", POS), ("--batch-size", POS), ("--seed", NONNEG), ("--layers", ["-1", "x"])],
    "mentor": [("--strengths", STRENGTHS), ("--rounds", NONNEG), ("--top-k", POS), ("--max-per-domain", POS),
               ("--max-new-tokens", POS), ("--reflect-tokens", NONNEG), ("--batch-size", POS), ("--seed", NONNEG),
               ("--layers", ["-1", "x"])],
})


def _more_rows() -> list[Case]:
    """The rows of the verbs in GOOD_MORE beyond their numbers: files, models, layers, --out, and #27's own cases."""
    rows = [Case(verb, f"{flag}={value}", {flag: [value] if isinstance(GOOD[verb].get(flag), list) else value}, flag)
            for verb in GOOD_MORE for flag, values in NUMBERS.get(verb, []) for value in values]
    for verb in GOOD_MORE:
        if verb in LOADS_MODEL and verb not in FIRST_VERBS:  # the first verbs' model rows are in _rows()
            rows += [Case(verb, "unknown model", {"--model": "no-such-model"}, "no-such-model"),
                     Case(verb, "model is a plain folder", {"--model": "{folder}"}, "{folder}"),
                     Case(verb, "model is a missing path", {"--model": "{missing}"}, "{missing}")]
        rows += [Case(verb, "out is a file", {"--out": "{a_file}"}, "--out", fix_in_same_out=False),
                 Case(verb, "out holds another verb's run", {"--out": "{probe_run}" if verb == "steer" else "{other_run}"},
                      "--out", fix_in_same_out=False),
                 Case(verb, "out not given", {"--out": DROP}, "--out")]
        if "--layers" in GOOD[verb]:
            rows += [Case(verb, "layer past the last block", {"--layers": ["99"]}, "99"),
                     Case(verb, "layers mix numbers and all", {"--layers": ["1", "all"]}, "--layers")]
    for verb, flag in (("probe", "--data"), ("neurofeedback", "--data"), ("steer-ab", "--data"),
                       ("steer", "--prompts"), ("steer", "--pairs"), ("mentor", "--queries"), ("mentor", "--tree"),
                       ("heads", "--task")):
        suffix = "_jsonl" if flag in ("--task",) else ""
        rows += [Case(verb, f"{flag} missing", {flag: "{missing}" + (".jsonl" if suffix else "")}, flag),
                 Case(verb, f"{flag} empty", {flag: "{empty" + suffix + "}"}, "{empty" + suffix + "}"),
                 Case(verb, f"{flag} not UTF-8", {flag: "{binary" + suffix + "}"}, "{binary" + suffix + "}"),
                 Case(verb, f"{flag} is a folder", {flag: "{folder" + suffix + "}"}, flag)]
    for verb in ("introspect eval", "introspect sample"):
        rows += [Case(verb, "train folder missing", {"--train": "{missing}"}, "--train"),
                 Case(verb, "train is a file", {"--train": "{a_file}"}, "--train"),
                 Case(verb, "train folder holds no run", {"--train": "{folder}"}, "{folder}"),
                 Case(verb, "head holds NaN", {"--train": "{nan_train}"}, "{nan_train}"),
                 Case(verb, "head of another width", {"--train": "{wide_train}"}, "{wide_train}")]
    rows += [
        Case("heads", "ig with zero steps", {"--methods": ["ig"], "--ig-steps": "0"}, "--ig-steps"),
        Case("heads", "unknown method", {"--methods": ["gradient"]}, "--methods"),
        Case("heads", "unknown task", {"--task": "addition"}, "addition"),
        Case("heads", "pairs csv with a short row", {"--task": "{short_csv}"}, "{short_csv}:3"),
        Case("heads", "pairs jsonl with non-text values", {"--task": "{nonstring_task_jsonl}"}, "{nonstring_task_jsonl}"),
        Case("emergent-heads", "post is a file", {"--post": "{a_file}"}, "--post"),
        Case("emergent-heads", "post is missing", {"--post": "{missing}"}, "--post"),
        Case("emergent-heads", "post holds no checkpoints", {"--post": "{folder}"}, "{folder}"),
        Case("emergent-heads", "unknown base model", {"--base": "no-such-model"}, "no-such-model"),
        Case("lens", "prompt not given", {"--prompt": DROP}, "--prompt"),
        Case("lens", "empty prompt", {"--prompt": ""}, "prompt"),
        Case("lens", "unknown backend", {"--backend": "jax"}, "--backend"),
        Case("neurofeedback", "several layers without --protocol paper", {"--layers": ["1", "2"]}, "--layers"),
        Case("neurofeedback", "n-values negative, as one token", {"--n-values=-2,4": None}, "--n-values"),
        Case("introspect sample", "alphas nan and negative", {"--alphas": ["nan", "-1"]}, "--alphas"),
        Case("introspect train", "tasks file empty", {"--task": "jsonl", "--tasks": "{empty_jsonl}"}, "{empty_jsonl}"),
        Case("introspect train", "tasks file not UTF-8", {"--task": "jsonl", "--tasks": "{binary_jsonl}"},
             "{binary_jsonl}"),
        Case("introspect train", "tasks file is a folder", {"--task": "jsonl", "--tasks": "{folder_jsonl}"}, "--tasks"),
        Case("introspect train", "tasks line not JSON", {"--task": "jsonl", "--tasks": "{bad_json}"}, "{bad_json}"),
        Case("emergent-heads", "pairs csv with a short row", {"--task": "{short_csv}"}, "{short_csv}:3"),
        Case("emergent-heads", "heldout-from missing", {"--heldout-from": "{missing}"}, "--heldout-from"),
        Case("neurofeedback", "pcs past the fit split", {"--pcs": "1,9999"}, "9999"),
        Case("neurofeedback", "unknown target axis", {"--implicit-targets": "PC7"}, "PC7"),
        Case("probe", "data line not JSON", {"--data": "{bad_json}"}, "{bad_json}"),
        Case("introspect rollouts", "unknown task", {"--task": "poems"}, "--task"),
        Case("introspect train", "tasks file missing", {"--task": "jsonl", "--tasks": "{missing}"}, "--tasks"),
        Case("introspect compare", "heads folder missing", {"--heads": ["{missing}", "{train}/head"]}, "--heads"),
        Case("steer", "pairs with non-string values", {"--pairs": "{nonstring_pairs}"}, "{nonstring_pairs}:2"),
        Case("steer", "vector holds NaN", {"--vector": "{nan_vector}", "--pairs": DROP}, "{nan_vector}"),
        Case("steer", "vector of another width", {"--vector": "{wide_vector}", "--pairs": DROP}, "{wide_vector}"),
        Case("steer", "vector missing", {"--vector": "{missing}", "--pairs": DROP}, "--vector"),
        Case("steer-ab", "data lacks its answers", {"--data": "{no_answer}"}, "{no_answer}"),
        Case("steer-ab", "too few items for a test interval", {"--max-items": "3"}, "--max-items"),
        Case("steer-ab", "unknown unit", {"--unit": "tokens"}, "--unit"),
        Case("mentor", "truncated tree", {"--tree": "{truncated_tree}"}, "{truncated_tree}:1"),
        Case("mentor", "tree entry not a string", {"--tree": "{bad_tree}"}, "{bad_tree}"),
        Case("mentor", "queries with non-string keywords", {"--queries": "{bad_queries}"}, "{bad_queries}:1"),
        Case("mentor", "two layers", {"--layers": ["1", "2"]}, "--layers"),
    ]
    return rows


ROWS += _more_rows()


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """On 64-wide tiny models thread hand-offs cost more than the arithmetic (3-4x slower on a busy CPU)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """Paths every row may name: good inputs and each kind of bad file."""
    root = tmp_path_factory.mktemp("inputs")
    item = {"question": "Is water wet?", "choices": ["yes", "no"], "answer": 0}
    write = {
        "texts": "first text\nsecond one is longer\nthird\n",
        "empty": "",
        "items": "".join(json.dumps({**item, "group": f"g{i}"}) + "\n" for i in range(4)),
        "bad_json": json.dumps(item) + "\n{\"question\": oops}\n",
        "no_answer": json.dumps({"question": "q", "choices": ["a", "b"]}) + "\n",
        "choices_text": json.dumps({"question": "q", "choices": "ab", "answer": 0}) + "\n",
        "answer_range": json.dumps({"question": "q", "choices": ["a", "b"], "answer": 7}) + "\n",
        "a_file": "not a folder\n",
        "sae_texts": "".join(f"Text number {i}: the cat sat on the mat, and the fox jumped over it.\n" for i in range(8)),
        "one_text": "Only one text here, nothing to hold out.\n",
    }
    paths = {name: root / f"{name}.txt" for name in write}
    for name, text in write.items():
        paths[name].write_text(text)
    paths["binary"] = root / "binary.txt"
    paths["binary"].write_bytes(b"caf\xe9 au lait\n\xff\xfe\n")
    paths["folder"] = root / "a-folder"
    paths["folder"].mkdir()
    (paths["folder"] / "notes.txt").write_text("no model here\n")
    paths["missing"] = root / "no-such-path"
    paths["other_run"] = root / "other-run"
    paths["other_run"].mkdir()
    (paths["other_run"] / RUN_MARKER).write_text(json.dumps({"kind": "steer"}))
    paths["parts"] = root / "parts"
    for i in range(2):
        assert main(["capture", *MODEL, *_argv_of(GOOD["capture"], {"--out": str(paths["parts"]), "--texts":
                                                                   str(paths["texts"])}),
                     "--shard-index", str(i), "--num-shards", "2"]) == 0
    paths["no_text_csv"] = root / "no_text.csv"
    paths["no_text_csv"].write_text("label,body\n1,some words\n")
    paths["no_text_jsonl"] = root / "no_text.jsonl"
    paths["no_text_jsonl"].write_text(json.dumps({"body": "some words"}) + "\n")
    for name, site, width in (("sae_dir", "blocks.1.hook_resid_post", 64), ("sae_narrow", "blocks.1.hook_resid_post", 32),
                              ("sae_deep", "blocks.9.hook_resid_post", 64)):
        gen = torch.Generator().manual_seed(0)
        paths[name] = SAE(W_enc=torch.randn(width, 16, generator=gen) / 8, W_dec=torch.randn(16, width, generator=gen),
                          b_enc=torch.zeros(16), b_dec=torch.zeros(width), site=site).save(root / name)
    paths["bad_parts"] = root / "bad-parts"
    paths["bad_parts"].mkdir()
    (paths["bad_parts"] / "manifest.part0-of-2.json").write_text("{not json")
    paths.update(_more_files(root, paths))
    return {k: str(v) for k, v in paths.items()}


def _more_files(root: Path, paths: dict) -> dict[str, Path]:
    """The inputs of the verbs in GOOD_MORE: their data, saved runs and artifacts, each good and broken."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    import metalens
    from metalens.steering import train_steering_vector
    from metalens.store import sha256

    more: dict[str, Path] = {}

    def write(name: str, text: str) -> None:
        more[name] = root / name.replace("_jsonl", ".jsonl").replace("_csv", ".csv")
        more[name].write_text(text)

    dumps = json.dumps
    write("probe_data", "".join(dumps({"text": f"sentence {i} is {'good' if i % 2 else 'bad'}", "label": i % 2}) + "\n"
                                for i in range(20)))
    write("ab_data", "".join(dumps({"question": f"Q{i}?\n (A) x\n (B) y", "answer_matching_behavior": " (A)",
                                    "answer_not_matching_behavior": " (B)"}) + "\n" for i in range(10)))
    write("prompts", "Tell me about your day.\nWhat is your job like?\nDescribe your town.\nGive me advice.\n")
    write("pairs", "".join(dumps({"positive": f"ocean waves {i}", "negative": f"dry land {i}"}) + "\n" for i in range(4)))
    write("nonstring_pairs", dumps({"positive": "a", "negative": "b"}) + "\n" + dumps({"positive": 3, "negative": "b"}) + "\n")
    write("empty_jsonl", "")
    more["binary_jsonl"] = root / "binary.jsonl"
    more["binary_jsonl"].write_bytes(b"caf\xe9 au lait\n\xff\xfe\n")
    more["folder_jsonl"] = root / "a-folder.jsonl"
    more["folder_jsonl"].mkdir()
    write("short_csv", "clean,corrupted,answer,wrong_answer\n1+1=,1+2=,2,3\n2+2=,2+3=,4\n")
    write("nonstring_task_jsonl", dumps({"clean": "1+1=", "corrupted": "1+2=", "answer": 2, "wrong_answer": "3"}) + "\n")
    write("truncated_tree", '{"domains": {"finance": {"advice": ["Do not promise retur')
    write("bad_tree", dumps({"domains": {"finance": {"advice": [3, "ok"]}}}))
    write("bad_queries", dumps({"query": "q1", "domain": "finance", "rubric": "r", "keywords": [1, 2]}) + "\n")
    # a post-training run for emergent-heads, and a rollout store where every other question is answered right
    more["probe_run"] = root / "probe-run"  # for steer, whose own kind the shared other_run holds
    more["probe_run"].mkdir()
    (more["probe_run"] / RUN_MARKER).write_text(json.dumps({"kind": "probe"}))
    more["post"] = root / "post"
    assert main(command("posttrain", {"--out": str(more["post"])}, {})) == 0
    more["rollouts"] = root / "rollouts"
    assert main(["introspect", "rollouts", *MODEL, "--task", "arithmetic", "--n-tasks", "8", "--levels", "1",
                 "--n-samples", "2", "--max-new-tokens", "4", "--out", str(more["rollouts"])]) == 0
    store = more["rollouts"] / "rollouts.jsonl"
    records = [json.loads(line) for line in store.read_text().splitlines() if line.strip()]
    for r in records:  # a random model never answers right: plant texts (rewards are re-graded from them)
        r["texts"] = [f" The answer is {r['answer'] if r['task_index'] % 2 else -1}."] * len(r["texts"])
    store.write_text("".join(dumps(r) + "\n" for r in records))
    manifest = json.loads((more["rollouts"] / "manifest.json").read_text())
    manifest["sha256"] = sha256(store)
    (more["rollouts"] / "manifest.json").write_text(dumps(manifest))
    more["train"] = root / "train"
    assert main(command("introspect train", {"--out": str(more["train"]), "--rollouts": str(more["rollouts"])}, {})) == 0

    def broken_copy(src: Path, name: str, file: str, key: str, change) -> None:
        more[name] = root / name
        shutil.copytree(src, more[name])
        target = more[name] / file if file else next(more[name].rglob("*.safetensors"))
        tensors = load_file(str(target))
        tensors[key] = change(tensors[key])
        save_file(tensors, str(target))

    nan_at_0 = lambda w: torch.where(torch.arange(w.numel()).reshape(w.shape) == 0, float("nan"), w)  # noqa: E731
    broken_copy(more["train"], "nan_train", "head/head.safetensors", "weight", nan_at_0)
    broken_copy(more["train"], "wide_train", "head/head.safetensors", "weight", lambda w: torch.cat([w, w], -1))
    model = metalens.load_model(MODEL[1], device="cpu")
    vector = root / "vector"
    train_steering_vector(model, ["aaa bbb", "aab"], ["ccc ddd", "ccd"], layers=[1]).save(vector)
    key = next(iter(load_file(str(next(vector.rglob("*.safetensors"))))))
    broken_copy(vector, "nan_vector", "", key, nan_at_0)
    broken_copy(vector, "wide_vector", "", key, lambda w: torch.cat([w, w], -1))
    return more


def _argv_of(flags: dict, values: dict | None = None) -> list[str]:
    argv: list[str] = []
    for flag, value in flags.items():
        value = (values or {}).get(flag, value)
        if value is DROP:
            continue
        parts = value if isinstance(value, list) else [] if value is None else [value]
        if flag == "":
            argv += parts
        elif flag in REPEATED:
            for p in parts:
                argv += [flag, p]
        else:
            argv += [flag, *parts]
    return argv


def command(verb: str, change: dict, paths: dict) -> list[str]:
    """The argv of `verb`'s good command with `change` applied, placeholders filled from `paths`."""
    flags = dict(GOOD[verb])
    model = {"--model": (LLAMA if verb in CHAT_VERBS else MODEL)[1], "--device": "cpu"} if verb in LOADS_MODEL else {}
    flags = {**model, **flags, **change}
    filled = {k: ([v.format(**paths) for v in val] if isinstance(val, list) else
                  val.format(**paths) if isinstance(val, str) else val) for k, val in flags.items()}
    return [*verb.split(), *_argv_of(filled)]


def run(argv: list[str], capsys) -> tuple[int, str]:
    """(exit code, stderr) of `metalens ARGV` run in-process."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    return code, capsys.readouterr().err


def _written(out: Path) -> list[str]:
    if not out.exists():
        return []
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.name != RUN_MARKER)


@pytest.mark.parametrize("case", ROWS, ids=[f"{c.verb}: {c.id}" for c in ROWS])
def test_a_bad_input_is_one_line_naming_it_and_writes_nothing(case, files, tmp_path, capsys):
    paths = {**files, "out": str(tmp_path / "out")}
    before = _written(Path(paths["other_run"])) + _written(Path(files["folder"]))
    code, err = run(command(case.verb, case.change, paths), capsys)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert case.names.format(**paths) in lines[0], lines[0]
    assert _written(tmp_path / "out") == []
    assert _written(Path(paths["other_run"])) + _written(Path(files["folder"])) == before


@pytest.fixture()
def fast_demo(monkeypatch):
    """The demo's area list with one quick area: the verb's own checks and writing run for real."""
    import sys
    import types

    from metalens.analyses import demo as demo_module

    def quick(model, out):
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.html").write_text("<html></html>")
        return {"headline": f"{model.n_layers} blocks"}

    area = types.ModuleType("quick_area")
    area.demo = quick
    monkeypatch.setitem(sys.modules, "quick_area", area)
    monkeypatch.setattr(demo_module, "AREA_DEMOS", [("probes", "quick_area", "demo")])


@pytest.mark.parametrize("verb", sorted(GOOD))
def test_after_its_bad_inputs_the_corrected_command_succeeds_in_the_same_out(verb, files, tmp_path, capsys,
                                                                              fast_demo):
    paths = {**files, "out": str(tmp_path / "out")}
    for case in (c for c in ROWS if c.verb == verb and c.fix_in_same_out):
        assert run(command(verb, case.change, paths), capsys)[0] == 2, case
    code, err = run(command(verb, {}, paths), capsys)
    assert code == 0, err
    if "--out" in GOOD[verb] and verb not in OUT_UNCHECKED:
        assert json.loads((tmp_path / "out" / RUN_MARKER).read_text())["kind"] == verb.replace(" ", "-")

"""The bad-input table: every verb's good command and the rows that break it, as data.

A row is a verb's good command (GOOD) with a few flags changed and the flag or file its one-line
error must name; `command` turns either into an argv for `metalens.cli.main`. The tests that run
the rows are in `tests/core/test_bad_inputs.py`; a new verb joins by adding a GOOD entry and rows.
"""
from __future__ import annotations

from dataclasses import dataclass, field

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
                  ("--levels", ["9", "-1"]), ("--group-size", ["1"]), ("--temperature", ["0", "nan"]),
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
    "sensitivity steer-ab": {"--data": "{ab_data}", "--layers": ["1"], "--strengths": ["0", "1"], "--seeds": "1",
                             "--steer-strengths": ["-0.1", "0", "0.1"], "--max-items": "10", "--out": "{out}"},
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
                            ("--batch-questions", POS), ("--levels", ["9", "-1", "x"]), ("--seed", NONNEG)],
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
                 ("--max-new-tokens", POS), ("--batch-size", POS), ("--seed", NONNEG), ("--layers", ["-1", "x"]),
                 ("--cost-bound", ["0", "-0.5", "nan", "inf", "x"])],
    "sensitivity steer-ab": [("--strengths", ["-1", "nan", "inf", "x"]), ("--seeds", ["0", "1001", "nan", "x"]),
                             ("--max-items", POS), ("--plant-layer", ["-1", "x", "1.5"]),
                             ("--steer-strengths", STRENGTHS), ("--batch-size", POS), ("--layers", ["-1", "x"])],
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
                       ("sensitivity steer-ab", "--data"), ("steer", "--prompts"), ("steer", "--pairs"), ("mentor", "--queries"), ("mentor", "--tree"),
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
        Case("steer-ab", "unknown metric", {"--metric": "ratio"}, "--metric"),
        Case("steer-ab", "unknown steer positions", {"--steer-positions": "question"}, "--steer-positions"),
        Case("sensitivity steer-ab", "data lacks its answers", {"--data": "{no_answer}"}, "{no_answer}"),
        Case("sensitivity steer-ab", "too few items for a test interval", {"--max-items": "3"}, "--max-items"),
        Case("sensitivity steer-ab", "plant layer not a candidate", {"--plant-layer": "0"}, "--plant-layer"),
        Case("sensitivity steer-ab", "plant layer the last block", {"--layers": ["2"], "--plant-layer": "2"},
             "--plant-layer"),
        Case("mentor", "truncated tree", {"--tree": "{truncated_tree}"}, "{truncated_tree}:1"),
        Case("mentor", "tree entry not a string", {"--tree": "{bad_tree}"}, "{bad_tree}"),
        Case("mentor", "queries with non-string keywords", {"--queries": "{bad_queries}"}, "{bad_queries}:1"),
        Case("mentor", "two layers", {"--layers": ["1", "2"]}, "--layers"),
    ]
    return rows


ROWS += _more_rows()


def argv_of(flags: dict, values: dict | None = None) -> list[str]:
    """argv from {flag: value}: lists expand (repeated flags once per value), None is a bare flag, DROP omits."""
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
    return [*verb.split(), *argv_of(filled)]

# --- metalens features (#31): attribution patching over an SAE's features -------------------------------------

GOOD["features"] = {"--task": "induction", "--n": "2", "--sae": "{sae_dir}", "--top": "2", "--n-boot": "0",
                    "--data": "{sae_texts}", "--card-texts": "2", "--out": "{out}"}
LOADS_MODEL.add("features")
NUMBERS["features"] = [("--n", POS), ("--ig-steps", POS), ("--top", POS), ("--controls", NONNEG), ("--n-boot", NONNEG), ("--card-texts", POS),
                       ("--max-length", ["1", "-5", "nan", "x"]), ("--seed", NONNEG)]
ROWS += [Case("features", f"{flag}={value}", {flag: value}, flag) for flag, values in NUMBERS["features"] for value in values]
ROWS += [
    Case("features", "unknown model", {"--model": "no-such-model"}, "no-such-model"),
    Case("features", "out is a file", {"--out": "{a_file}"}, "--out", fix_in_same_out=False),
    Case("features", "out holds another verb's run", {"--out": "{other_run}"}, "--out", fix_in_same_out=False),
    Case("features", "sae not given", {"--sae": DROP}, "--sae"),
    Case("features", "sae folder missing", {"--sae": "{missing}"}, "--sae"),
    Case("features", "sae folder holds no dictionary", {"--sae": "{folder}"}, "{folder}"),
    Case("features", "sae of another model's width", {"--sae": "{sae_narrow}"}, "d_in is 32"),
    Case("features", "sae at a site the model lacks", {"--sae": "{sae_deep}"}, "blocks.9"),
    Case("features", "kl metric", {"--metric": "kl"}, "--metric"),
    Case("features", "unknown method", {"--method": "exact"}, "--method"),
    Case("features", "unknown task", {"--task": "addition"}, "addition"),
    Case("features", "corpus missing", {"--data": "{missing}"}, "--data"),
    Case("features", "corpus csv without a text column", {"--data": "{no_text_csv}"}, "{no_text_csv}"),
]

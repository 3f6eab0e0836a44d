"""Every verb answers a bad input with one line naming the flag or file, exit 2, and leaves --out usable.

Each row of the table (`tests/core/bad_inputs_table.py`) runs `metalens.cli.main` in-process on
`random:tiny-gemma3` and checks: exit code 2, exactly one line on stderr, no traceback, that line
names the flag or file, and nothing under --out but the `metalens-run.json` marker. Then, per verb,
the good command succeeds in the same --out the bad rows ran into.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from metalens.cli import main
from metalens.options import RUN_MARKER
from metalens.sae import SAE
from tests.core.bad_inputs_table import GOOD, GOOD_MORE, MODEL, OUT_UNCHECKED, ROWS, argv_of, command


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
        assert main(["capture", *MODEL, *argv_of(GOOD["capture"], {"--out": str(paths["parts"]), "--texts":
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

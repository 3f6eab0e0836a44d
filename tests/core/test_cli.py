"""`metalens capture` / `metalens merge` on a model saved to a local directory."""
import json

import pytest
import torch

import metalens
from metalens.cli import main


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    from metalens.testing import tiny_model

    model = tiny_model("llama", seed=3)
    path = tmp_path_factory.mktemp("tiny-llama")
    model.hf.save_pretrained(path)
    model.tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture()
def texts_file(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("first text\n\nsecond one is longer\nthird\nfourth text here\n")
    return path


def test_capture_cli_writes_a_complete_capture(saved_model, texts_file, tmp_path, capsys):
    out = tmp_path / "acts"
    code = main(["capture", "--model", saved_model, "--device", "cpu", "--site", "blocks.1.hook_resid_post",
                 "--site", "blocks.0.attn.hook_z", "--texts", str(texts_file), "--out", str(out), "--batch-size", "2"])
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["n_texts"] == 4 and len(manifest["shards"]) == 2
    assert metalens.load_activations(out)["blocks.0.attn.hook_z"].shape == (4, 4, 16)


def test_capture_cli_parts_merge_into_the_single_process_result(saved_model, texts_file, tmp_path):
    common = ["capture", "--model", saved_model, "--device", "cpu", "--site", "blocks.2.hook_resid_post",
              "--texts", str(texts_file), "--positions", "mean"]
    assert main(common + ["--out", str(tmp_path / "one")]) == 0
    for i in range(2):
        assert main(common + ["--out", str(tmp_path / "two"), "--shard-index", str(i), "--num-shards", "2"]) == 0
    assert main(["merge", str(tmp_path / "two")]) == 0
    one, two = metalens.load_activations(tmp_path / "one"), metalens.load_activations(tmp_path / "two")
    torch.testing.assert_close(one["blocks.2.hook_resid_post"], two["blocks.2.hook_resid_post"])


def test_capture_cli_reports_bad_site_as_an_error(saved_model, texts_file, tmp_path, capsys):
    code = main(["capture", "--model", saved_model, "--device", "cpu", "--site", "blocks.9.hook_resid_post",
                 "--texts", str(texts_file), "--out", str(tmp_path / "x")])
    assert code == 2
    assert "blocks 0-2" in capsys.readouterr().err


def test_every_area_verb_is_registered_through_entry_points():
    from metalens.cli import build_parser

    verbs = set(build_parser()._subparsers._group_actions[0].choices)
    assert {"capture", "merge", "probe", "neurofeedback", "introspect", "steer", "heads",
            "emergent-heads", "demo", "posttrain"} <= verbs


def test_an_area_that_fails_to_import_reports_its_error_when_its_verb_is_called(capsys):
    from importlib.metadata import EntryPoint

    broken = EntryPoint(name="heads", value="metalens_no_such_area.cli:register", group="metalens.verbs")
    assert main(["heads", "--task", "induction"], points=[broken]) == 2
    err = capsys.readouterr().err
    assert "'metalens heads' is unavailable: metalens_no_such_area.cli:register failed to import" in err
    assert "ModuleNotFoundError" in err

"""Bad inputs to `heads`, `emergent-heads` and `lens`: one line naming the flag or file, exit 2, before the
model loads and before anything is written under --out; results that would be garbage are errors."""
import pytest
import torch

import metalens
from metalens.circuits import ContrastTask, HeadsConfig, LensConfig, run_heads, run_lens
from metalens.circuits.emergent import EmergentConfig, run_emergent_heads
from metalens.circuits.tasks import load_task
from metalens.cli import main
from tests.cli_checks import refused


@pytest.mark.parametrize("flag, value", [("--ig-steps", "0"), ("--n", "0"), ("--n", "2.5"), ("--seed", "-3"),
                                         ("--methods", "gradient")])
def test_a_bad_heads_option_names_its_flag(flag, value, tmp_path, capsys, no_model):
    out = tmp_path / "run"
    err = refused(["heads", flag, value, "--out", str(out)], capsys)
    assert flag in err and not out.exists()


@pytest.mark.parametrize("flag, value", [("--n-test", "0"), ("--n-boot", "-1"), ("--n-edges", "0"),
                                         ("--ig-steps", "0"), ("--own-tokens", "0"), ("--max-checkpoints", "-1")])
def test_a_bad_emergent_heads_number_names_its_flag(flag, value, tmp_path, capsys, no_model):
    err = refused(["emergent-heads", "--post", str(tmp_path), flag, value, "--out", str(tmp_path / "run")], capsys)
    assert flag in err


def test_emergent_heads_post_naming_a_file_is_refused(tmp_path, capsys, no_model):
    file = tmp_path / "model.bin"
    file.write_bytes(b"")
    err = refused(["emergent-heads", "--post", str(file), "--out", str(tmp_path / "run")], capsys)
    assert "--post" in err and "not a directory" in err


def test_a_post_folder_without_a_model_or_checkpoints_is_refused(tmp_path, tiny_gemma, capsys, no_model):
    with pytest.raises((ValueError, FileNotFoundError), match="No checkpoints|holds no model"):
        run_emergent_heads(tiny_gemma, tmp_path, EmergentConfig(n_problems=0), progress=False)
    out = tmp_path / "run"
    err = refused(["emergent-heads", "--post", str(tmp_path), "--out", str(out)], capsys)  # before the base loads
    assert "No checkpoints" in err and not out.exists()


@pytest.mark.parametrize("verb", ["heads", "lens"])
def test_out_naming_a_file_is_refused(verb, tmp_path, capsys, no_model):
    file = tmp_path / "taken.txt"
    file.write_text("mine")
    extra = ["--prompt", "hello"] if verb == "lens" else []
    err = refused([verb, *extra, "--out", str(file)], capsys)
    assert "--out" in err and file.read_text() == "mine"


def test_out_holding_another_verbs_run_is_refused(tmp_path, capsys, no_model):
    from metalens.options import mark_out

    mark_out(tmp_path / "run", "probe")
    err = refused(["heads", "--out", str(tmp_path / "run")], capsys)
    assert "'probe' run" in err


def test_task_naming_a_folder_or_an_unknown_task_is_refused(tmp_path, capsys, no_model):
    folder = tmp_path / "pairs.jsonl"
    folder.mkdir()
    assert "directory" in refused(["heads", "--task", str(folder), "--out", str(tmp_path / "a")], capsys)
    assert "neither a task" in refused(["heads", "--task", "addition", "--out", str(tmp_path / "b")], capsys)


def test_a_short_csv_row_names_the_file_and_line(tmp_path, capsys, no_model):
    path = tmp_path / "pairs.csv"
    path.write_text("clean,corrupted,answer,wrong_answer\n1+1=,1+2=,2,3\n2+2=,2+3=,4\n")
    with pytest.raises(ValueError, match=r"pairs.csv:3 has 3 fields"):
        load_task(path)
    err = refused(["heads", "--task", str(path), "--out", str(tmp_path / "run")], capsys)
    assert "pairs.csv:3" in err and not (tmp_path / "run").exists()


def test_non_text_values_in_a_pairs_jsonl_are_refused(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"clean": "1+1=", "corrupted": "1+2=", "answer": 2}\n')
    with pytest.raises(ValueError, match=r"record 1 has non-text \['answer'\]"):
        load_task(path)


@pytest.mark.parametrize("field, value", [("ig_steps", 0), ("n", 0), ("seed", -1)])
def test_heads_config_refuses_counts_that_would_give_empty_scores(field, value):
    with pytest.raises(ValueError, match=field):
        HeadsConfig(**{field: value})


@pytest.mark.parametrize("field, value", [("n", 0), ("n_test", 0), ("n_edges", 0), ("n_boot", -1)])
def test_emergent_config_refuses_bad_counts(field, value):
    with pytest.raises(ValueError, match=field):
        EmergentConfig(**{field: value})


def test_scores_that_are_all_zero_are_an_error_not_top_heads(tiny_gemma):
    same = ContrastTask("same", ["abcab", "bcabc"], ["abcab", "bcabc"], ["c", "a"], ["a", "b"])
    with pytest.raises(ValueError, match="Every head scores 0 by exact"):
        run_heads(tiny_gemma, HeadsConfig(task=same, methods=("exact",), detect=False), progress=False)


def test_lens_config_refuses_an_empty_prompt_or_target_or_backend():
    for bad in ({"prompt": ""}, {"prompt": "a", "target": ""}, {"prompt": "a", "backend": "jax"}):
        with pytest.raises(ValueError):
            LensConfig(**bad)


def test_lens_reads_only_the_layers_asked_and_refuses_a_missing_block(tiny_gemma, tmp_path, monkeypatch, capsys):
    result = run_lens(tiny_gemma, LensConfig(prompt="abcab", layers=(1,)), out=tmp_path / "lens")
    full = run_lens(tiny_gemma, LensConfig(prompt="abcab"))
    assert result.blocks == [1] and result.top_token == full.top_token[1:2]
    torch.testing.assert_close(torch.tensor(result.top_prob), torch.tensor(full.top_prob[1:2]))
    assert type(result).load(tmp_path / "lens").blocks == [1]
    monkeypatch.setattr(metalens, "load_model", lambda name, device=None, dtype=None: tiny_gemma)
    out = tmp_path / "bad"
    err = refused(["lens", "--prompt", "abc", "--layers", str(tiny_gemma.n_layers), "--out", str(out)], capsys)
    assert str(tiny_gemma.n_layers) in err and not out.exists()
    assert main(["lens", "--prompt", "abc", "--layers", "0", "--out", str(out)]) == 0
    assert (out / "results.json").is_file() and (out / "metalens-run.json").is_file()
    torch.testing.assert_close(torch.tensor(type(result).load(out).top_prob[0]),
                               torch.tensor(run_lens(tiny_gemma, LensConfig(prompt="abc")).top_prob[0]))


def test_probes_and_circuits_verbs_speak_one_vocabulary():
    """--layers (nargs, never --layer), --out through add_out_arg, --seed a checked integer, on every verb here."""
    import argparse

    from metalens.cli import build_parser

    verbs = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    for verb in ("probe", "neurofeedback", "heads", "emergent-heads", "lens"):
        flags = {s: a for a in verbs[verb]._actions for s in a.option_strings}
        assert "--layer" not in flags and "--out" in flags and flags["--out"].type.__name__ == "out_path", verb
        if "--layers" in flags:
            assert flags["--layers"].nargs == "+", verb
        if "--seed" in flags:
            assert flags["--seed"].type("3") == 3, verb
    assert {"--layers"} <= set(s for a in verbs["lens"]._actions for s in a.option_strings)

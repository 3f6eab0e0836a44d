"""`metalens introspect ...` refuses bad input at the boundary: one line naming the flag or file, exit 2,
no model loaded and nothing written; and a trained run is found again from any working directory."""
import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

import metalens
from metalens.cli import main
from metalens.testing import tiny_model
from test_introspect_full import _planted_store



# (verb and its arguments, the flag the one-line error must name); {run} is an existing folder
BAD_VALUES = [
    (["sample", "--train", "{run}", "--alphas", "nan", "-1"], "--alphas"),
    (["sample", "--train", "{run}", "--alphas", "-1"], "--alphas"),
    (["sample", "--train", "{run}", "--beta", "inf"], "--beta"),
    (["sample", "--train", "{run}", "--every", "0"], "--every"),
    (["sample", "--train", "{run}", "--cv", "1"], "--cv"),
    (["sample", "--train", "{run}", "--utility-betas", "-0.1"], "--utility-betas"),
    (["sample", "--train", "{run}", "--seed", "-1"], "--seed"),
    (["rollouts", "--temperature", "nan"], "--temperature"),
    (["rollouts", "--min-p", "2"], "--min-p"),
    (["rollouts", "--n-samples", "0"], "--n-samples"),
    (["rollouts", "--levels", "9"], "--levels"),
    (["rollouts", "--max-new-tokens", "2.5"], "--max-new-tokens"),
    (["train", "--test-fraction", "1"], "--test-fraction"),
    (["train", "--test-fraction", "nan"], "--test-fraction"),
    (["train", "--lr", "0"], "--lr"),
    (["train", "--steps", "-3"], "--steps"),
    (["train", "--n-value-states", "1"], "--n-value-states"),
    (["train", "--task", "jsonl", "--tasks", "{run}/missing.jsonl"], "--tasks"),
    (["eval", "--train", "{run}", "--fractions", "1.5"], "--fractions"),
    (["eval", "--train", "{run}", "--n-shuffles", "0"], "--n-shuffles"),
    (["eval", "--train", "{run}/missing"], "--train"),
    (["compare", "--heads", "{run}", "{run}", "--n-boot", "0"], "--n-boot"),
]


@pytest.mark.parametrize("argv,flag", BAD_VALUES, ids=[" ".join(a) for a, _ in BAD_VALUES])
def test_a_bad_value_is_one_line_naming_its_flag_before_anything_loads_or_is_written(argv, flag, tmp_path,
                                                                                     capsys, no_model):
    run = tmp_path / "run"
    run.mkdir()
    out = tmp_path / "out"
    args = [a.format(run=run) for a in argv]
    with pytest.raises(SystemExit) as exit_:
        main(["introspect", *args, "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and flag in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_an_out_holding_another_verbs_run_is_refused_before_the_model_loads(tmp_path, capsys, no_model):
    out = tmp_path / "out"
    out.mkdir()
    (out / "metalens-run.json").write_text(json.dumps({"kind": "probe"}))
    assert main(["introspect", "rollouts", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "'probe' run" in err and sorted(p.name for p in out.iterdir()) == ["metalens-run.json"]


@pytest.fixture
def trained_run(tmp_path, monkeypatch):
    """(model, run folder) of a head-mode head trained through the CLI, from a relative --rollouts."""
    model = tiny_model("gemma3", seed=10)
    monkeypatch.setattr(metalens, "load_model", lambda *a, **k: model)
    monkeypatch.chdir(tmp_path)
    _planted_store(model, tmp_path / "r", n=8)
    assert main(["introspect", "train", "--out", "run", "--rollouts", "r", "--steps", "30",
                 "--test-fraction", "0.5"]) == 0
    return model, tmp_path / "run"


def test_a_run_records_its_rollouts_relative_to_itself_and_evaluates_from_another_directory(trained_run, tmp_path,
                                                                                           monkeypatch):
    model, run = trained_run
    assert json.loads((run / "results.json").read_text())["rollouts"] == os.path.join("..", "r")
    assert json.loads((run / "head" / "head.json").read_text())["rollouts"] == os.path.join("..", "r")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["introspect", "eval", "--train", str(run), "--out", "ev", "--fractions", "0", "1",
                 "--no-verbal", "--n-shuffles", "1"]) == 0
    assert (elsewhere / "ev" / "results.json").exists()
    assert json.loads((elsewhere / "ev" / "metalens-run.json").read_text())["kind"] == "introspect-eval"


def test_a_head_of_another_width_is_refused_naming_its_file_before_any_work(trained_run, tmp_path, capsys):
    _, run = trained_run
    file = run / "head" / "head.safetensors"
    weight = load_file(str(file))["weight"]
    save_file({"weight": torch.cat([weight, weight], 1)}, str(file))  # [K, 2 x d_model]: another model's
    assert main(["introspect", "eval", "--train", str(run), "--out", str(tmp_path / "ev")]) == 2
    err = capsys.readouterr().err
    assert str(file) in err and "wide" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "ev").exists()  # refused before anything was written


def test_a_head_holding_nan_is_refused_at_load_naming_its_file(trained_run, tmp_path, capsys, no_model):
    _, run = trained_run
    file = run / "head" / "head.safetensors"
    weight = load_file(str(file))["weight"]
    weight[0, 0] = float("nan")
    save_file({"weight": weight}, str(file))
    assert main(["introspect", "sample", "--train", str(run), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert str(file) in err and "NaN" in err and not (tmp_path / "s").exists()


def test_an_auroc_that_would_be_nan_is_an_error_not_a_number(trained_run, monkeypatch):
    from metalens.introspect import EvalConfig, run_eval
    from metalens.introspect.workflows import eval as eval_workflow

    model, run = trained_run
    real = eval_workflow.evaluate_head

    def one_class(*args, **kwargs):  # every scored sample with the same reward: AUROC undefined
        scores = real(*args, **kwargs)
        scores["all_positions"]["head"]["auroc"] = float("nan")
        return scores

    monkeypatch.setattr(eval_workflow, "evaluate_head", one_class)
    with pytest.raises(ValueError, match="AUROC.*undefined"):
        run_eval(model, EvalConfig(run, fractions=(1.0,), verbal=False, n_shuffles=1), progress=False)


def test_eval_and_sample_take_a_train_result_or_its_folder(trained_run):
    from metalens.introspect import EvalConfig, SampleConfig, TrainResult, run_eval, run_sample

    model, run = trained_run
    trained = TrainResult.load(run)
    assert TrainResult.load(run / "head").out == str(run)  # the head/ folder names its run too
    by_result = run_eval(model, EvalConfig(trained, fractions=(1.0,), verbal=False, n_shuffles=1), progress=False)
    by_folder = run_eval(model, EvalConfig(run, fractions=(1.0,), verbal=False, n_shuffles=1), progress=False)
    assert by_result.all_positions["head"] == by_folder.all_positions["head"]
    sampled = run_sample(model, SampleConfig(trained, alphas=(0.0,)), out=run / "s", progress=False)
    assert json.loads((run / "s" / "results.json").read_text())["config"]["train"] == str(run)
    assert sampled.pool_size == 2


@pytest.mark.parametrize("flags, fast", [([], False), (["--fast"], True)])
def test_fast_flag_makes_the_verbs_generation_take_the_fast_path(flags, fast, tmp_path, monkeypatch):
    from metalens import fastgen
    from metalens.introspect.rollouts import store

    seen = []

    def record(model, *args, **kwargs):
        seen.append(fastgen.fast_by_default(model))
        raise ValueError("stopped after generation began")

    monkeypatch.setattr(metalens, "load_model", lambda *a, **k: tiny_model("llama", seed=3))
    monkeypatch.setattr(store, "generate_rollouts", record)
    assert main(["introspect", "rollouts", "--out", str(tmp_path / "r"), "--n-tasks", "2", *flags]) == 2
    assert seen == [fast] and not fastgen.fast_by_default(tiny_model("llama", seed=3))  # reset after the verb

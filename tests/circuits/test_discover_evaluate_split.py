"""`eval_n` / `--eval-n`: edge scores from discovery pairs, faithfulness curves and their intervals from
other pairs, and a split that leaves fewer than 2 pairs on a side refused before any model work."""
import json

import pytest

from metalens.circuits import HeadsConfig, HeadsResult, run_heads
from metalens.circuits import heads as heads_module
from metalens.circuits.heads import split_pairs
from metalens.circuits.tasks import induction_task
from metalens.cli import main


def test_split_pairs_are_disjoint_and_cover_the_task(tiny_gemma):
    task = induction_task(tiny_gemma.tokenizer, n=8)
    discover, evaluate, split = split_pairs(task, 3, seed=0)
    assert len(evaluate) == 3 and len(discover) == 5
    assert not set(split["discover"]) & set(split["evaluate"])
    assert sorted(split["discover"] + split["evaluate"]) == list(range(8))
    assert evaluate.clean == [task.clean[i] for i in split["evaluate"]]
    same, again, none = split_pairs(task, None, seed=0)
    assert same is task and again is task and none == {}


def test_scores_come_from_discovery_pairs_and_curves_from_evaluation_pairs(tiny_gemma, tmp_path, monkeypatch):
    seen = {"scores": set(), "curves": set()}
    scores_of, curves_of = heads_module.method_edge_scores, heads_module.faithfulness_curves

    def scores(model, task, *args, **kwargs):
        seen["scores"] |= set(task.clean)
        return scores_of(model, task, *args, **kwargs)

    def curves(model, task, *args, **kwargs):
        seen["curves"] |= set(task.clean)
        return curves_of(model, task, *args, **kwargs)

    monkeypatch.setattr(heads_module, "method_edge_scores", scores)
    monkeypatch.setattr(heads_module, "faithfulness_curves", curves)
    cfg = HeadsConfig(task="induction", n=6, methods=("attribution", "ig"), ig_steps=2, detect=False,
                      faithfulness=True, ks=(10, 100), eval_n=3)
    result = run_heads(tiny_gemma, cfg, out=tmp_path, progress=False)
    assert len(seen["scores"]) == 3 and len(seen["curves"]) == 3
    assert not seen["scores"] & seen["curves"]
    assert seen["curves"] == {result.task.clean[i] for i in result.split["evaluate"]}
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["split"] == result.split and saved["metadata"]["n_evaluate"] == 3
    attribution = saved["faithfulness"]["attribution"]
    for key in ("cpr_signed", "cmd_abs", "cpr_interval", "cmd_interval", "cpr_diff_vs_eap_ig", "cmd_diff_vs_eap_ig"):
        assert key in attribution
    assert attribution["cpr_interval"]["n"] == 3 and attribution["cpr_diff_vs_eap_ig"]["n_comparisons"] == 2
    assert HeadsResult.load(tmp_path).split == result.split


@pytest.mark.parametrize("fields, match", [({"n": 6, "eval_n": 5}, "leaves 1"), ({"n": 6, "eval_n": 1}, "eval_n"),
                                           ({"n": 6, "eval_n": 3, "faithfulness": False}, "faithfulness")])
def test_heads_config_refuses_a_split_without_two_pairs_a_side(fields, match):
    with pytest.raises(ValueError, match=match):
        HeadsConfig(**{"faithfulness": True, **fields})


@pytest.mark.parametrize("argv", [["--n", "16", "--eval-n", "15", "--faithfulness"], ["--eval-n", "0", "--faithfulness"],
                                  ["--eval-n", "2.5", "--faithfulness"], ["--eval-n", "4"]])
def test_a_bad_eval_n_is_refused_before_the_model_loads(argv, tmp_path, capsys, no_model):
    out = tmp_path / "run"
    try:
        code = main(["heads", "--task", "induction", *argv, "--out", str(out)])
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--eval-n" in err, err
    assert not out.exists()


def test_a_pairs_file_too_small_to_split_is_refused_before_the_model_loads(tmp_path, capsys, no_model):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"clean": "ab ab", "corrupted": "ab cd", "answer": "a", "wrong": "c"}\n' * 3)
    out = tmp_path / "run"
    assert main(["heads", "--task", str(pairs), "--eval-n", "2", "--faithfulness", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--eval-n 2" in err and "gives 3 pairs" in err and not out.exists()

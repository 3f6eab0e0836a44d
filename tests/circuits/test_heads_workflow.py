"""`run_heads` and the `metalens heads` verb: one function, results saved and loaded back alike."""
import json

import pytest
import torch

from metalens.circuits import HeadsConfig, HeadsResult, run_heads
from metalens.circuits.detect import KINDS


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_gemma):
    out = tmp_path_factory.mktemp("heads")
    result = run_heads(tiny_gemma, HeadsConfig(task="induction", n=3, ig_steps=2), out=out, progress=False)
    return out, result


def test_run_heads_scores_every_method_and_compares_with_exact(saved):
    _, result = saved
    assert set(result.scores) == {"attribution", "ig", "exact"} and set(result.detectors) == set(KINDS)
    assert set(result.spearman_vs_exact) == {"attribution", "ig"}
    assert all(s.shape == (3, 4) for s in [*result.scores.values(), *result.detectors.values()])
    assert {"none", "top3_induction", "random_mean"} <= set(result.induction_ablation)


def test_heads_result_loads_back_what_it_saved(saved):
    out, result = saved
    loaded = HeadsResult.load(out)
    for method, scores in result.scores.items():
        torch.testing.assert_close(loaded.scores[method], scores)
    torch.testing.assert_close(loaded.detectors["induction"], result.detectors["induction"])
    assert loaded.config == result.config and loaded.task == result.task
    assert loaded.induction_ablation["top3_induction"]["heads"] == result.induction_ablation["top3_induction"]["heads"]
    assert (out / "report.html").exists()


def test_heads_result_from_a_newer_format_is_refused(saved, tmp_path):
    out, result = saved
    result.save(tmp_path)
    meta = json.loads((tmp_path / "heads.json").read_text())
    meta["format"]["version"] = 99
    (tmp_path / "heads.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="upgrade metalens"):
        HeadsResult.load(tmp_path)


def test_unknown_method_is_refused_when_configuring():
    with pytest.raises(ValueError, match="Unknown method"):
        HeadsConfig(methods=("attribution", "magic"))


def test_heads_verb_runs_the_workflow_and_prints_its_numbers(tmp_path, capsys):
    from metalens.cli import main
    from metalens.testing import tiny_model

    tiny = tiny_model("gemma3", seed=2)
    tiny.hf.save_pretrained(tmp_path / "m")
    tiny.tokenizer.save_pretrained(tmp_path / "m")
    code = main(["heads", "--model", str(tmp_path / "m"), "--device", "cpu", "--task", "induction", "--n", "2",
                 "--methods", "attribution", "exact", "--no-detect", "--out", str(tmp_path / "out")])
    printed = capsys.readouterr().out
    assert code == 0 and "attribution:" in printed and "Spearman vs exact" in printed
    loaded = HeadsResult.load(tmp_path / "out")
    assert set(loaded.scores) == {"attribution", "exact"} and loaded.detectors == {}


def test_shown_heads_patterns_are_saved_reported_and_loaded(tiny_gemma, tmp_path):
    cfg = HeadsConfig(task="induction", n=2, methods=("attribution",), detect=False, show=("1.2", "L0.H3"))
    result = run_heads(tiny_gemma, cfg, out=tmp_path, progress=False)
    patterns = result.attention["patterns"]
    assert set(patterns) == {"L1.H2", "L0.H3"}
    n = len(result.attention["tokens"])
    for pattern in patterns.values():
        p = torch.tensor(pattern)
        assert p.shape == (n, n)
        torch.testing.assert_close(p.sum(-1), torch.ones(n))
    assert HeadsResult.load(tmp_path).attention == json.loads(json.dumps(result.attention))
    assert "Attention of L1.H2" in (tmp_path / "report.html").read_text()


def test_a_bad_shown_head_is_refused_before_any_scoring(tiny_gemma):
    with pytest.raises(ValueError, match="layers 0-2"):
        run_heads(tiny_gemma, HeadsConfig(task="induction", n=2, show=("7.0",)), progress=False)


def test_faithfulness_curves_are_run_per_method_and_saved(tiny_gemma, tmp_path):
    cfg = HeadsConfig(task="induction", n=2, methods=("attribution", "exact"), detect=False, faithfulness=True,
                      ks=(0, 50, 100))
    result = run_heads(tiny_gemma, cfg, out=tmp_path, progress=False)
    assert set(result.faithfulness) == {"attribution", "exact"}
    for curve in result.faithfulness.values():
        assert curve["k"] == [0.0, 50.0, 100.0] and curve["n_edges"][0] == 0
        assert curve["n_edges"][-1] == curve["total_edges"]
        assert curve["circuit"][0] == pytest.approx(curve["corrupted"], abs=1e-4)  # no edge kept: the corrupted run
        assert curve["faithfulness"][-1] == pytest.approx(1.0, abs=1e-3)  # every edge kept: the clean run
    saved = json.loads((tmp_path / "results.json").read_text())["faithfulness"]
    assert saved["exact"]["cpr"] == pytest.approx(result.faithfulness["exact"]["cpr"])
    assert HeadsResult.load(tmp_path).faithfulness["attribution"]["k"] == [0.0, 50.0, 100.0]
    assert "Faithfulness of edge circuits" in (tmp_path / "report.html").read_text()


def test_faithfulness_grid_outside_percentages_is_refused():
    with pytest.raises(ValueError, match="percentages"):
        HeadsConfig(faithfulness=True, ks=(0.5, 150))

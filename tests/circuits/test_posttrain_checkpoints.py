"""`run_posttrain` writes checkpoints and its held-out split; `run_emergent_heads` reads both back."""
import pytest
import torch

import metalens
from metalens.analyses.posttrain import PosttrainConfig, PosttrainResult, run_posttrain
from metalens.checkpoints import read_checkpoint_meta
from metalens.circuits import EmergentConfig, EmergentResult, run_emergent_heads
from metalens.tasks.arithmetic import make_problems
from metalens.testing import tiny_model

CFG = PosttrainConfig(steps=4, save_every=2, n_eval=3, max_new_tokens=3, lr=1e-2, heldout_seed=77)
EMERGENT = EmergentConfig(task="induction", n=3, n_test=3, n_edges=15, ig_steps=1, n_problems=2, n_random=1, n_boot=0)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny base model saved to disk (so adapters can name it) and a 4-step posttrain run over it."""
    root = tmp_path_factory.mktemp("posttrain")
    tiny = tiny_model("gemma3", seed=3)
    tiny.hf.save_pretrained(root / "base")
    tiny.tokenizer.save_pretrained(root / "base")
    model = metalens.load_model(str(root / "base"), device="cpu")
    before = model.layers[0].self_attn.o_proj.weight.detach().clone()
    result = run_posttrain(model, CFG, out=root / "run", progress=False)
    return root, result, before


def test_posttrain_saves_ordered_checkpoints_and_a_loadable_final_model(run):
    root, result, before = run
    assert [c["step"] for c in result.curve] == [0, 2, 4]
    assert [p.rsplit("/", 1)[-1] for p in result.checkpoints] == ["step-00000", "step-00002", "step-00004"]
    assert [p.name for p in metalens.list_checkpoints(root / "run")][:3] == ["step-00000", "step-00002", "step-00004"]
    final = metalens.load_model(str(root / "run" / "final"), device="cpu")
    assert not torch.allclose(final.layers[0].self_attn.o_proj.weight, before)  # LoRA deltas merged and saved
    assert (root / "run" / "results.json").exists() and (root / "run" / "report.html").exists()


def test_posttrain_records_the_heldout_split_it_graded_on(run):
    root, result, _ = run
    expected = [p.question for p in make_problems(3, levels=CFG.levels, seed=77)]
    assert [p["question"] for p in result.heldout["problems"]] == expected and result.heldout["seed"] == 77
    for ckpt in [*result.checkpoints, root / "run" / "final"]:
        assert read_checkpoint_meta(ckpt)["heldout"] == result.heldout
    loaded = PosttrainResult.load(root / "run")
    assert loaded.heldout == result.heldout and loaded.config == CFG
    assert loaded.accuracy_after["completions"] == result.accuracy_after["completions"]


def test_posttrain_reports_accuracy_intervals_and_the_paired_change_over_the_same_problems(run):
    _, result, _ = run
    for acc in (result.accuracy_before, result.accuracy_after):
        # (wilson_ci's lower bound at 0 successes can round to ~1e-17 above 0)
        assert 0 <= acc["low"] <= acc["accuracy"] + 1e-12 and acc["accuracy"] <= acc["high"] <= 1
        assert len(acc["correct"]) == 3
    diff = [a - b for a, b in zip(result.accuracy_after["correct"], result.accuracy_before["correct"])]
    assert result.change["n"] == 3 and result.change["mean_diff"] == pytest.approx(sum(diff) / 3)


def test_emergent_heads_grade_on_the_posttrain_heldout_split_and_follow_its_checkpoints(run, tmp_path):
    root, _, _ = run
    result = run_emergent_heads(str(root / "base"), root / "run", EMERGENT, out=tmp_path, progress=False)
    assert result.heldout["seed"] == 77 and result.heldout["n"] == 2
    assert result.ablation and all("accuracy" in row for row in result.ablation.values())
    assert result.checkpoint_steps == [0, 2, 4] and result.checkpoint_scores.shape == (3, 3, 4)
    loaded = EmergentResult.load(tmp_path)
    assert (loaded.emergent, loaded.lost, loaded.shared) == (result.emergent, result.lost, result.shared)
    assert loaded.cohort == result.cohort and loaded.heldout == result.heldout
    torch.testing.assert_close(loaded.checkpoint_scores, result.checkpoint_scores)


def test_emergent_heads_without_a_heldout_split_skip_accuracy():
    base, post = tiny_model("gemma3", seed=0), tiny_model("gemma3", seed=1)
    result = run_emergent_heads(base, post, EMERGENT, progress=False)
    assert result.heldout is None
    assert result.ablation and not any("accuracy" in row for row in result.ablation.values())

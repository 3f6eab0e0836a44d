"""The atlas's arithmetic items stay apart from the problems a post-training run trained on."""
import json

import pytest

from metalens.analyses.atlas import AtlasConfig, run_atlas
from metalens.analyses.battery import arithmetic_items
from tests.analyses.atlas_sizes import SMALL


# --- items apart from post-training problems ------------------------------------------------------


def test_training_problems_replays_the_problems_a_run_trained_on(monkeypatch, tmp_path):
    """The replay is the run's own sampler: it lists exactly the batches `run_posttrain` trained on."""
    from metalens.analyses import posttrain as posttrain_module
    from metalens.analyses.posttrain import PosttrainConfig, run_posttrain, training_problems
    from metalens.testing import tiny_model

    seen = []
    monkeypatch.setattr(posttrain_module, "sft_step", lambda model, batch, opt: seen.extend(batch) or 0.0)
    cfg = PosttrainConfig(steps=5, save_every=5, batch_size=3, n_eval=4, max_new_tokens=2, levels=(1, 2),
                          checkpoint_accuracy=False, merge_final=False, seed=3)
    run_posttrain(tiny_model("gemma3"), cfg, progress=False)
    assert [p.question for p in seen] == [p.question for p in training_problems(cfg)]
    assert [p.question for p in training_problems(cfg, 2)] == [p.question for p in seen[:6]]


@pytest.fixture(scope="module")
def posttrain_folder(tmp_path_factory):
    """A real `metalens posttrain` final model, trained on many level-1 problems (81 exist)."""
    from metalens.analyses.posttrain import PosttrainConfig, run_posttrain
    from metalens.testing import tiny_model

    out = tmp_path_factory.mktemp("posttrain")
    cfg = PosttrainConfig(steps=6, save_every=6, batch_size=8, n_eval=2, max_new_tokens=2, levels=(1,),
                          checkpoint_accuracy=False)
    run_posttrain(tiny_model("gemma3"), cfg, out=out, progress=False)
    return str(out / "final")


def test_atlas_of_a_posttrain_folder_asks_none_of_its_training_problems(posttrain_folder):
    from metalens.analyses.atlas_config import ARITHMETIC_SEED
    from metalens.analyses.overlap import posttrain_questions

    trained = posttrain_questions(posttrain_folder)["questions"]
    cfg = AtlasConfig(**{**SMALL, "levels": (1,), "reporting": False})
    unchecked = arithmetic_items(cfg.n_arithmetic, cfg.levels, ARITHMETIC_SEED + cfg.seed)
    would_overlap = sum(it.question[8:-1] in trained for it in unchecked)
    assert would_overlap >= 2  # without the check the draw would ask training problems
    result = run_atlas([posttrain_folder], cfg, progress=False)
    asked = [row["question"][8:-1] for row in result.models[0]["items"] if row["source"] == "arithmetic"]
    assert len(asked) == 8 and not set(asked) & trained
    record = result.training_overlap
    assert record["n_excluded_overlap"] == would_overlap and record["n_overlap_left"] == 0
    assert record["posttrain_runs"][0]["n_problems"] == 48 and record["not_posttrain_folders"] == []
    assert sum(it.answer for it in atlas_items_of(cfg, trained)) == 4  # still balanced within the level


def atlas_items_of(cfg, exclude):
    from metalens.analyses.atlas import atlas_items

    return [it for it in atlas_items(cfg, exclude) if it.source == "arithmetic"]


def test_a_posttrain_record_that_cannot_be_replayed_is_refused_and_other_folders_are_unchecked(tmp_path):
    from metalens.analyses.overlap import training_overlap
    from metalens.checkpoints import META_FILE

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / META_FILE).write_text(json.dumps({"config": {"steps": "many"}, "heldout": {}}))
    with pytest.raises(ValueError, match="cannot replay"):
        training_overlap([str(tmp_path / "run")])
    exclude, record = training_overlap(["gemma-3-270m", str(tmp_path)])
    assert exclude == set() and record["not_posttrain_folders"] == ["gemma-3-270m", str(tmp_path)]

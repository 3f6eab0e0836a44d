"""`metalens sae train|eval` end to end on a tiny model, and where their text comes from."""
from __future__ import annotations

import json

import pytest
import torch

import metalens
from metalens.cli import main
from metalens.sae import SAETrainConfig, SAETraining, train_sae
from metalens.sae.corpus import DEFAULT_SOURCE, read_corpus, split_texts, take_tokens

MODEL = ["--model", "random:tiny-gemma3", "--device", "cpu"]
SCORES = ("variance_explained", "l0", "dead_share", "ce_clean", "ce_spliced", "ce_zero_ablation", "ce_mean_ablation",
          "ce_recovered_zero", "ce_recovered_mean")


@pytest.fixture()
def texts(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("".join(f"Sentence {i} says the cat sat on the mat while a fox ran by.\n" for i in range(10)))
    return str(path)


def train(texts, out, steps="3"):
    return main(["sae", "train", *MODEL, "--site", "blocks.1.hook_resid_post", "--data", texts, "--tokens", "300",
                 "--width", "16", "--k", "4", "--steps", steps, "--train-batch-size", "32", "--checkpoint-every", "1",
                 "--eval-share", "0.2", "--out", str(out)])


def test_train_writes_scores_with_both_baselines_and_the_wall_time(texts, tmp_path):
    assert train(texts, tmp_path / "run") == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert all(isinstance(results[key], float) for key in SCORES)
    assert results["l0"] == 4.0  # TopK: exactly k per token
    assert results["n_eval_texts"] == 2 and results["data_source"] == texts
    assert results["wall_seconds"] > 0 and results["training"]["n_train_tokens"] >= 300
    assert (tmp_path / "run" / "sae" / "cfg.json").is_file()


def test_eval_on_the_same_data_and_seed_reproduces_the_training_runs_scores(texts, tmp_path):
    assert train(texts, tmp_path / "run") == 0
    assert main(["sae", "eval", *MODEL, "--sae", str(tmp_path / "run" / "sae"), "--data", texts, "--eval-share", "0.2",
                 "--out", str(tmp_path / "eval")]) == 0
    trained = json.loads((tmp_path / "run" / "results.json").read_text())
    scored = json.loads((tmp_path / "eval" / "results.json").read_text())
    for key in SCORES:
        assert scored[key] == pytest.approx(trained[key], rel=1e-6), key


def test_a_longer_rerun_resumes_the_checkpoint(texts, tmp_path):
    assert train(texts, tmp_path / "short", steps="2") == 0
    assert train(texts, tmp_path / "short", steps="4") == 0
    assert train(texts, tmp_path / "straight", steps="4") == 0
    resumed, straight = SAETraining.load(tmp_path / "short"), SAETraining.load(tmp_path / "straight")
    assert resumed.losses == pytest.approx(straight.losses)


def test_without_data_the_texts_are_pythons_help_paragraphs():
    texts, source = read_corpus()
    assert source == DEFAULT_SOURCE and "Python Software Foundation License" in source
    assert len(texts) > 1000 and all(len(t.split()) >= 8 for t in texts)


def test_the_split_is_seeded_and_disjoint():
    texts = [f"text {i}" for i in range(20)]
    train_a, held_a = split_texts(texts, 0.25, seed=3)
    assert split_texts(texts, 0.25, seed=3) == (train_a, held_a)
    assert len(held_a) == 5 and not set(train_a) & set(held_a) and sorted(train_a + held_a) == sorted(texts)


def test_take_tokens_stops_once_the_budget_is_met(tiny_gemma):
    texts = ["abcd"] * 10  # the tiny model's tokenizer: one token per character
    taken, n = take_tokens(tiny_gemma, texts, 10, max_length=None)
    assert n >= 10 and len(taken) < 10
    assert take_tokens(tiny_gemma, texts[:2], 10_000, max_length=None)[0] == texts[:2]


def test_mean_initialised_decoder_bias_starts_at_the_activation_mean(tiny_gemma):
    texts = [f"Sentence {i} about a cat and a fox." for i in range(4)]
    config = SAETrainConfig(site="blocks.1.hook_resid_post", width=16, k=4, steps=1, lr=1e-12, batch_size=16,
                            init_b_dec="mean")
    trained = train_sae(tiny_gemma, texts, config, progress=False)
    captured = metalens.capture(tiny_gemma, texts, [config.site], positions="all", progress=False)
    acts = torch.cat([t[1:] for t in captured.split(config.site)])  # BOS dropped, as training drops it
    torch.testing.assert_close(trained.sae.b_dec, acts.mean(0), atol=1e-4, rtol=1e-4)

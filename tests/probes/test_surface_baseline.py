"""The surface (words-only) baseline of the reporting task: it finds labels planted in the words or
the length, stays at chance on labels unrelated to the text, sees only the examples before each
item, and rides along in every reporting row."""
import numpy as np
import pytest

from metalens.probes.reporting import measure_reporting
from metalens.probes.surface import prompt_surface_scores, surface_accuracy, surface_scores

VOCAB = ["apple", "river", "stone", "cloud", "green", "table", "quiet", "lamp", "horse", "paper", "north", "salt",
         "glass", "winter", "music", "bread", "chair", "light", "smoke", "field", "metal", "honey", "storm", "wheel"]


def sentences(rng, n, zebra=None, lengths=(5, 9)):
    """`n` sentences of random words; where `zebra[i]`, one word is replaced by "zebra"."""
    out = []
    for i in range(n):
        words = list(rng.choice(VOCAB, rng.integers(*lengths)))
        if zebra is not None and zebra[i]:
            words[rng.integers(len(words))] = "zebra"
        out.append(" ".join(words) + ".")
    return out


def test_planted_word_is_found_with_enough_examples():
    rng = np.random.default_rng(0)
    accs = []
    for _ in range(10):
        labels = rng.permutation([0, 1] * 24)
        texts = sentences(rng, 48, zebra=labels == 1)
        accs.append(surface_accuracy(texts[:32], labels[:32], texts[32:], labels[32:]))
    assert np.mean(accs) >= 0.9  # about 0.83 from 16 examples, 0.99 from 32


def test_planted_length_is_found():
    rng = np.random.default_rng(1)
    accs = []
    for _ in range(10):
        labels = rng.permutation([0, 1] * 20)
        texts = [s for lab in labels for s in sentences(rng, 1, lengths=(12, 16) if lab else (3, 7))]
        accs.append(surface_accuracy(texts[:16], labels[:16], texts[16:], labels[16:]))
    assert np.mean(accs) >= 0.9


def test_labels_unrelated_to_the_words_stay_at_chance():
    rng = np.random.default_rng(2)
    accs = []
    for _ in range(200):
        texts = sentences(rng, 32)
        labels = rng.integers(0, 2, 32)
        accs.append(surface_accuracy(texts[:16], labels[:16], texts[16:], labels[16:]))
    assert abs(np.mean(accs) - 0.5) < 0.04


def test_one_class_examples_predict_that_class_and_no_examples_flip_a_coin():
    texts = ["a zebra ran.", "the dog sat.", "a cat hid."]
    assert list(surface_scores(texts[:2], [1, 1], texts[2:], [1])) == [1.0]
    assert list(surface_scores(texts[:2], [1, 1], texts[2:], [0])) == [0.0]
    assert list(surface_scores([], [], texts, [0, 1, 1])) == [0.5, 0.5, 0.5]


def test_identical_examples_with_both_labels_are_a_coin_flip():
    assert list(surface_scores(["same words.", "same words."], [0, 1], ["same words."], [1])) == [0.5]


def test_prompt_scores_use_only_the_examples_before_each_item():
    rng = np.random.default_rng(3)
    labels = rng.permutation([0, 1] * 8)
    texts = sentences(rng, 16, zebra=labels == 1)
    scores = prompt_surface_scores(texts, labels)
    later = labels.copy()
    later[9:] = 1 - later[9:]  # change only the labels of items 9 onward
    assert np.array_equal(prompt_surface_scores(texts, later)[:9], scores[:9])
    for i in (0, 5, 12):
        assert scores[i] == surface_scores(texts[:i], labels[:i], texts[i:i + 1], labels[i:i + 1])[0]


def test_reporting_rows_carry_the_surface_accuracy_of_the_same_prompts(tiny_gemma, monkeypatch):
    # The tiny model reads characters: a 512-position context would cut the prompts to ~6 items.
    monkeypatch.setattr(tiny_gemma.hf.config, "max_position_embeddings", 4096)
    rng = np.random.default_rng(4)
    zebra = rng.permutation([0, 1] * 20)
    texts = sentences(rng, 40, zebra=zebra == 1)
    labels = np.stack([zebra, rng.permutation(zebra)], 1)  # axis "zebra" is in the words; axis "noise" is not
    res = measure_reporting(tiny_gemma, texts, labels, ["zebra", "noise"], n_values=(0, 4, 8, 16), draws=3, n_test_min=8,
                        progress=False)
    assert res.surface.shape == (2, 3, 17)
    rows = {r["axis"]: r for r in res.to_dict()["tests"]}
    assert rows["zebra"]["surface_accuracy"] >= 0.7  # items with 8 to 16 examples
    assert rows["noise"]["surface_accuracy"] < rows["zebra"]["surface_accuracy"]
    for a in range(2):  # the learner saw the items of each draw's prompt, in prompt order, under that axis' labels
        for d in range(3):
            idx = res.items[d]
            assert np.array_equal(res.surface[a, d], prompt_surface_scores([texts[i] for i in idx], labels[idx, a]))
    expected = res.surface[0][:, 8:].mean(1).mean()
    assert rows["zebra"]["surface_accuracy"] == pytest.approx(expected)
    curve = res.to_dict()["curves"]["zebra"]
    assert [r["N"] for r in curve] == [0, 4, 8, 16] and curve[0]["surface_accuracy"] == 0.5
    assert "surface_accuracy" not in res.to_dict()["curves"]["shuffled"][0]
    model_acc = (res.p_correct[0][:, 8:] > 0.5).mean(1)  # the model against the learner, paired over draws
    assert rows["zebra"]["vs_surface_diff"] == pytest.approx((model_acc - res.surface[0][:, 8:].mean(1)).mean())
    assert 0 <= rows["zebra"]["p_vs_surface"] <= rows["zebra"]["p_vs_surface_holm"] <= 1

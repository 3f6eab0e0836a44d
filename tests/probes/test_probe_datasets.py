"""Shipped sentence sets: size, balance, no duplicates, reproducible from the generator."""
import json
from collections import Counter

import pytest

from metalens.probes import load_dataset
from metalens.data import read_jsonl
from metalens.probes.datasets import DATA_DIR
from tests.scripts import load_tool

_datagen = load_tool("probes_datagen")
fact_sentences, moral_sentences = _datagen.fact_sentences, _datagen.moral_sentences


@pytest.mark.parametrize("name,minimum", [("moral", 600), ("facts", 600)])
def test_shipped_set_is_large_balanced_and_unique(name, minimum):
    ds = load_dataset(name)
    assert len(ds) >= minimum
    counts = Counter(ds.labels)
    assert set(counts) == {0, 1} and counts[0] == counts[1]
    assert len(set(ds.texts)) == len(ds.texts)
    assert len(set(ds.label_names.values())) == 2


def test_moral_sentences_are_first_person_and_shipped_file_matches_generator():
    assert read_jsonl(DATA_DIR / "moral.jsonl") == moral_sentences()
    assert read_jsonl(DATA_DIR / "facts.jsonl") == fact_sentences()
    assert all(" I " in f" {r['text']}" for r in moral_sentences())


def test_no_sentence_is_in_both_classes():
    for records in (moral_sentences(), fact_sentences()):
        by_text = {}
        for r in records:
            by_text.setdefault(r["text"], set()).add(r["label"])
        assert all(len(v) == 1 for v in by_text.values())


def test_hand_checked_facts_carry_the_right_label():
    labels = {r["text"]: r["label"] for r in fact_sentences(n_per_label=320)}
    known = {"The capital of France is Paris.": 1, "Two plus three is five.": 1, "Nine minus four is five.": 1}
    for text, label in known.items():
        if text in labels:
            assert labels[text] == label
    assert all(r["label"] == 0 for r in fact_sentences() if r["text"] == "The capital of France is Berlin.")


def test_loader_reads_user_jsonl_and_rejects_bad_labels(tmp_path):
    good = tmp_path / "mine.jsonl"
    good.write_text("\n".join(json.dumps({"text": f"t{i}", "label": i % 2}) for i in range(4)))
    ds = load_dataset(good)
    assert ds.labels == [0, 1, 0, 1] and ds.name == "mine"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "x", "label": "yes"}))
    with pytest.raises(ValueError, match="integers"):
        load_dataset(bad)
    with pytest.raises(FileNotFoundError, match="moral"):
        load_dataset("no-such-set")


def test_balanced_subset_takes_equal_classes_reproducibly():
    ds = load_dataset("moral")
    sub = ds.balanced(40, seed=1)
    assert len(sub) == 40 and Counter(sub.labels) == {0: 20, 1: 20}
    assert sub.texts == ds.balanced(40, seed=1).texts != ds.balanced(40, seed=2).texts
    assert set(sub.texts) <= set(ds.texts) and ds.balanced(None) is ds

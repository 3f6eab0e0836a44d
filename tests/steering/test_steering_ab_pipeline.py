"""`run_steer_ab` and `metalens steer-ab`: validation-only layer choice, the promised results, the CLI."""
from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
import torch

import metalens
from metalens.steering import SteerABConfig, SteerABResult, SteeringVector, run_steer_ab
from metalens.steering.ab import workflow as ab_pipeline
from metalens.steering.ab.items import read_ab, split_items
from metalens.steering.cli import register

from test_steering_ab import write_items

LETTERS = "AABABBABABAB"


def test_run_steer_ab_writes_propensity_steerability_layer_and_splits(tiny_llama, tmp_path):
    data = write_items(tmp_path / "d.jsonl", LETTERS)
    config = SteerABConfig(str(data), layers=[1, 2], strengths=(-2, 2), open_items=2, max_new_tokens=3)
    result = run_steer_ab(tiny_llama, config, out=tmp_path / "out", progress=False)
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["strengths"] == [-2.0, 0.0, 2.0] and saved["layer"] in (1, 2)
    splits = saved["splits"]
    assert splits["train"] + splits["validation"] + splits["test"] == 12 and min(splits.values()) >= 1
    assert abs(splits["train_matching_A"] - splits["train_matching_B"]) <= 1  # 7 training items: 4 and 3
    for layer in ("1", "2"):
        rows = saved["propensity"][layer]
        assert [r["strength"] for r in rows] == [-2.0, 0.0, 2.0]
        assert all(r["low"] <= r["mean"] <= r["high"] and 0 <= r["flip_share"] <= 1 for r in rows)
        assert rows[1]["flip_share"] == 0.0  # strength 0 never differs from itself
        s = saved["steerability"][layer]
        assert s["low"] <= s["estimate"] <= s["high"] and s["n"] == saved["splits"]["test"]
    assert [c["strength"] for c in saved["costs"]] == [-2.0, 0.0, 2.0] and saved["costs"][1]["neutral_loss_change"] == 0
    assert saved["costs"][0]["n_control"] == 24 and saved["costs"][0]["n_neutral"] == 15  # the held-out half
    assert saved["metric"] == "logit-diff" and saved["steer_positions"] == "response"
    r = saved["strength_range"]
    assert r["cost_bound_nats"] == 0.5 and r["chosen_on"] == "validation" and r["low"] <= 0 <= r["high"]
    assert set(r["cost_per_strength"]) == {"-2", "0", "2"} and set(r["per_layer"]) == {"1", "2"}
    for split in ("validation", "test"):
        block = saved["propensity_items"][split]
        assert len(block["items"]) == splits[split] and all(i["index"] is not None for i in block["items"])
        for layer, by_strength in block["values"].items():
            assert all(len(v) == splits[split] for v in by_strength.values())
    chosen = saved["steerability"][str(saved["layer"])]
    assert chosen["exploratory"] is False and chosen["mde"]["value"] > 0 and chosen["mde"]["alpha"] == 0.05
    other = saved["steerability"]["2" if saved["layer"] == 1 else "1"]
    assert other["exploratory"] is True and other["n_comparisons"] == 1
    assert len(saved["samples"]) == 2 and {"question", "unsteered", "strength +2", "strength -2"} == set(saved["samples"][0])
    assert "Choices" not in saved["samples"][0]["question"]
    assert "plotly" in (tmp_path / "out" / "report.html").read_text()
    back = SteerABResult.load(tmp_path / "out")
    assert back.config == config and back.layer == result.layer and back.propensity == result.propensity
    assert back.vector.layers == [1, 2] and back.summary() == result.summary()


def test_layer_is_chosen_on_validation_items_and_reported_on_test_items(tiny_gemma, tmp_path, monkeypatch):
    data = write_items(tmp_path / "d.jsonl", LETTERS)
    config = SteerABConfig(str(data), layers=[1, 2], strengths=(-1, 1), open_items=0, unit="raw")
    _, val, test = split_items(read_ab(data), config.fractions, config.seed)
    val_q, test_q = {i.question for i in val}, {i.question for i in test}
    # Validation items say layer 1 steers best, test items say layer 2: the choice must follow validation.
    slope = {("val", 1): 0.2, ("val", 2): 0.05, ("test", 1): 0.01, ("test", 2): 0.3}
    scored = []

    def fake_propensity(model, items, edits=None, **kw):
        edits = edits([0] * len(items)) if callable(edits) else edits
        split = "val" if items[0].question in val_q else "test" if items[0].question in test_q else "other"
        scored.append(split)
        if edits is None or split == "other":
            return np.full(len(items), 0.5)
        (site, fn), = edits.items()
        layer = int(site.split(".")[1])
        direction = vector_seen[0].directions[layer]
        strength = float(fn(torch.zeros(1, 1, model.d_model))[0, 0] @ direction / (direction @ direction))
        return np.full(len(items), 0.5 + slope[(split, layer)] * strength)

    vector_seen = []
    real_train = ab_pipeline.train_steering_vector
    monkeypatch.setattr(ab_pipeline, "train_steering_vector", lambda *a, **k: vector_seen.append(real_train(*a, **k))
                        or vector_seen[0])
    real_choose = ab_pipeline.choose_layer
    monkeypatch.setattr(ab_pipeline, "choose_layer", lambda v: (scored.append("CHOSEN"), real_choose(v))[1])
    monkeypatch.setattr(ab_pipeline, "propensity", fake_propensity)
    result = run_steer_ab(tiny_gemma, config, progress=False)
    assert result.layer == 1
    assert "test" not in scored[:scored.index("CHOSEN")]  # no test item was scored before the choice
    assert result.steerability[2]["estimate"] == pytest.approx(0.3) and result.validation[1]["estimate"] == pytest.approx(0.2)


def parser():
    p = argparse.ArgumentParser()
    register(p.add_subparsers(dest="verb"))
    return p


def test_steer_ab_verb_parses_negative_strengths_and_layers(tmp_path):
    data = write_items(tmp_path / "f.jsonl", LETTERS)
    args = parser().parse_args(["steer-ab", "--model", "m", "--data", str(data), "--layers", "4", "6", "8",
                                "--strengths", "-4", "-2", "-1", "0", "1", "2", "4", "--out", "d", "--gguf", "v.gguf"])
    assert args.layers == [4, 6, 8] and args.strengths == [-4, -2, -1, 0, 1, 2, 4] and str(args.out) == "d"
    assert str(args.gguf) == "v.gguf" and args.control_data is None and args.func.__name__ == "_steer_ab"
    assert args.unit == "residual" and args.data == data
    assert str(parser().parse_args(["steer", "--rule", "ocean", "--out", "d", "--gguf", "x.gguf"]).gguf) == "x.gguf"


def test_steer_ab_verb_runs_and_exports_the_chosen_layer(tiny_llama, tmp_path, monkeypatch):
    data = write_items(tmp_path / "d.jsonl", LETTERS)
    monkeypatch.setattr(metalens, "load_model", lambda name, device=None, **kw: tiny_llama)
    args = parser().parse_args(["steer-ab", "--model", "tiny", "--data", str(data), "--layers", "1", "2",
                                "--strengths", "-1", "1", "--out", str(tmp_path / "o"), "--open-items", "0",
                                "--gguf", str(tmp_path / "v.gguf")])
    args.func(args)
    saved = json.loads((tmp_path / "o" / "results.json").read_text())
    vec = SteeringVector.from_gguf(tmp_path / "v.gguf", tiny_llama)
    assert vec.layers == [saved["layer"]] and saved["config"]["strengths"] == [-1.0, 0.0, 1.0]


@pytest.mark.parametrize("unit", ["residual", "raw"])
def test_the_unit_decides_how_long_the_applied_vector_is(tiny_llama, tmp_path, unit):
    data = write_items(tmp_path / "d.jsonl", LETTERS)
    config = SteerABConfig(str(data), layers=[1], strengths=(-1, 1), open_items=0, unit=unit)
    result = run_steer_ab(tiny_llama, config, progress=False)
    norm = float(result.vector.directions[1].norm())
    resid = result.vector.metadata["resid_norm"]["1"]
    assert math.isclose(norm, resid, rel_tol=1e-4) == (unit == "residual")


def test_an_unknown_unit_is_refused(tmp_path):
    with pytest.raises(ValueError, match="residual"):
        SteerABConfig(str(tmp_path / "d.jsonl"), unit="sd")

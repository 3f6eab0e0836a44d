"""Sensitivity of steer-ab on a tiny model: the planted behaviour moves the logit difference by its stated
unit, strength 0 is the unplanted model, a trial is judged by the published claim, the CLI writes results.json."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import metalens
from metalens.cli import main
from metalens.sensitivity import RESULT_KEYS
from metalens.sites import resid_post
from metalens.steering.ab.items import caa_pairs, propensity, read_ab
from metalens.steering.ab.planted import UNIT, PlantedSteerable
from metalens.steering.ab.sensitivity import judge, relabelled, steerability_claim
from metalens.steering.vector import adder, train_steering_vector
from tests.steering.test_steering_ab import write_items

LETTERS = "ABBABAABBABAABBAABAB"  # 20 items


@pytest.fixture()
def items(tmp_path):
    return read_ab(write_items(tmp_path / "d.jsonl", LETTERS))


def along(model, vector):
    """An edit factory steering `vector` at block 1 from each row's answer '(' on, as steer-ab steers."""
    return lambda start: {resid_post(1): adder(vector.to(model.device, model.dtype), True, start)}


def read(model, items, edits=None):
    return propensity(model, items, edits, metric="logit-diff", positions="response")


@pytest.mark.parametrize("direction_from", ["random", "activations"])
def test_steering_along_the_planted_direction_moves_the_logit_difference_by_strength_times_steps(tiny_gemma, items,
                                                                                                 direction_from):
    strength, steps = 3.0, 0.2
    unplanted_still = read(tiny_gemma, items)
    plant = PlantedSteerable(items, 1, strength, seed=4, direction_from=direction_from)
    with plant.install(tiny_gemma):
        step = steps * plant.norm * plant.direction  # `steps` residual norms along u
        still, steered = read(tiny_gemma, items), read(tiny_gemma, items, along(tiny_gemma, step))
    unplanted = read(tiny_gemma, items, along(tiny_gemma, step)) - unplanted_still  # what u does by itself
    np.testing.assert_allclose((steered - still) - unplanted, strength * steps, atol=1e-4)
    assert "per unit of steering strength" in UNIT


@pytest.mark.parametrize("direction_from", ["random", "activations"])
def test_caa_finds_the_planted_direction(tiny_gemma, items, direction_from):
    positive, negative = caa_pairs(tiny_gemma, items)
    plant = PlantedSteerable(items, 1, 1.0, seed=2, direction_from=direction_from)
    with plant.install(tiny_gemma):
        planted = train_steering_vector(tiny_gemma, positive, negative, layers=[1], positions="last").directions[1]
    plain = train_steering_vector(tiny_gemma, positive, negative, layers=[1], positions="last").directions[1]
    cos = lambda v: float(v @ plant.direction / v.norm())  # noqa: E731
    # the plant, not chance, puts CAA on u (a direction from the activations' span lies closer to a plain one)
    assert cos(planted) > 0.9 and abs(cos(plain)) < cos(planted) - 0.3


def test_the_two_direction_kinds_are_seeded_and_the_activations_one_lies_in_their_span(tiny_gemma, items):
    def drawn(kind, seed):
        plant = PlantedSteerable(items, 1, 1.0, seed=seed, direction_from=kind)
        plant.measure(tiny_gemma)
        return plant.direction
    g = torch.Generator().manual_seed(3)
    random_u = torch.randn(tiny_gemma.d_model, generator=g)
    torch.testing.assert_close(drawn("random", 3), random_u / random_u.norm())  # as every earlier run drew it
    positive, negative = caa_pairs(tiny_gemma, items)
    acts = metalens.capture(tiny_gemma, positive + negative, [resid_post(1)], positions="last", progress=False,
                            dtype=torch.float32)[resid_post(1)]
    basis = torch.linalg.svd(acts - acts.mean(0), full_matrices=False)[2]  # [rank, d_model], the centred span
    u = drawn("activations", 3)
    torch.testing.assert_close(basis.T @ (basis @ u), u, atol=1e-4, rtol=0)  # inside the span
    assert torch.equal(u, drawn("activations", 3)) and not torch.allclose(u, drawn("activations", 4))
    with pytest.raises(ValueError, match="direction_from must be one of"):
        drawn("uniform", 0)


def test_strength_zero_is_the_unplanted_model(tiny_gemma, items):
    positive, _ = caa_pairs(tiny_gemma, items)
    plain = read(tiny_gemma, items, along(tiny_gemma, torch.ones(tiny_gemma.d_model)))
    plain_v = train_steering_vector(tiny_gemma, positive[:4], positive[4:8], layers=[1], positions="last").directions[1]
    with PlantedSteerable(items, 1, 0.0).install(tiny_gemma):
        zero = read(tiny_gemma, items, along(tiny_gemma, torch.ones(tiny_gemma.d_model)))
        zero_v = train_steering_vector(tiny_gemma, positive[:4], positive[4:8], layers=[1], positions="last").directions[1]
    assert np.array_equal(plain, zero) and torch.equal(plain_v, zero_v)
    with PlantedSteerable(items, 1, 1.0).install(tiny_gemma):  # the check can fail: a planted model differs
        assert not np.array_equal(plain, read(tiny_gemma, items, along(tiny_gemma, torch.ones(tiny_gemma.d_model))))


def fake(layer, low, high):
    return SimpleNamespace(layer=layer, steerability={1: {"estimate": (low + high) / 2, "low": low, "high": high, "n": 4,
                                                          "mde": {"value": 0.1}}, 2: {"low": 5.0, "high": 6.0}},
                           ranges={1: {"low": -0.5, "high": 0.5}}, seconds=1.0,
                           validation={1: {"estimate": 0.7}, 2: {"estimate": 0.3}})


@pytest.mark.parametrize("layer, low, high, strength, detected, false_positive", [
    (1, 0.2, 0.9, 2.0, True, False),  # interval above 0 at the chosen layer, planted: detected
    (1, -0.1, 0.9, 2.0, False, False),  # interval holds 0: no claim
    (1, -0.9, -0.2, 2.0, False, True),  # a claim against the planted direction
    (1, 0.2, 0.9, 0.0, True, True),  # a claim with nothing planted: a false positive
    (1, -0.9, -0.2, 0.0, False, True),
    (1, -0.1, 0.9, 0.0, False, False),
    (None, 0.2, 0.9, 2.0, False, False),  # no layer chosen: no claim, whatever other layers show
])
def test_a_trial_is_judged_by_the_chosen_layers_interval(layer, low, high, strength, detected, false_positive):
    trial = judge(fake(layer, low, high), strength)
    assert (trial.detected, trial.false_positive) == (detected, false_positive)
    assert trial.details["per_layer"] == {  # every layer's validation and test slopes, whichever was chosen
        "1": {"validation": 0.7, "estimate": (low + high) / 2, "low": low, "high": high, "range": [-0.5, 0.5]},
        "2": {"validation": 0.3, "estimate": None, "low": 5.0, "high": 6.0, "range": None}}
    assert steerability_claim(fake(layer, low, high)) == (0 if layer is None or low <= 0 <= high else 1 if low > 0 else -1)


def test_relabelling_is_a_seeded_coin_flip(tmp_path):
    path = write_items(tmp_path / "d.jsonl", LETTERS)
    (tmp_path / "r").mkdir()
    first = [i.matching for i in read_ab(relabelled(path, 0, tmp_path / "r"))]
    again = [i.matching for i in read_ab(relabelled(path, 0, tmp_path / "r"))]
    other = [i.matching for i in read_ab(relabelled(path, 1, tmp_path / "r"))]
    assert first == again and first != other and first != list(LETTERS)


def test_cli_writes_the_detection_curve(tmp_path, capsys):
    data = write_items(tmp_path / "d.jsonl", LETTERS)
    out = tmp_path / "out"
    argv = ["sensitivity", "steer-ab", "--model", "random:tiny-gemma3", "--device", "cpu", "--data", str(data),
            "--layers", "1", "--strengths", "0", "20", "--seeds", "1", "--steer-strengths", "-0.2", "0", "0.2",
            "--out", str(out)]
    assert main(argv) in (0, None)
    result = json.loads((out / "results.json").read_text())
    assert set(result) == set(RESULT_KEYS)
    rows = {r["strength"]: r for r in result["detection"]}
    assert rows[20.0]["detected_share"] == 1.0 and rows[0.0]["detected_share"] == 0.0
    assert result["min_detectable_strength"] == 20.0 and result["strength_unit"] == UNIT
    assert result["settings"]["plant_layer"] == 1 and result["settings"]["steer_ab"]["metric"] == "logit-diff"
    runs = sorted((out / "runs").glob("*.json"))
    assert len(runs) == 2 and "plant" in json.loads(runs[-1].read_text())["details"]
    assert "min detectable strength" in capsys.readouterr().out

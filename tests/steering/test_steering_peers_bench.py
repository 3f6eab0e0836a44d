"""bench/steer_peers.py: strengths chosen on validation prompts by a stated grid walk, test prompts
scored once, paired differences and ABBA speed ratios; a missing peer is skipped, not fatal."""
import importlib.util

import pytest

from tests.scripts import load_bench


@pytest.fixture(scope="module")
def peers():
    return load_bench("steer_peers")


def scorer(table):
    """score(strength) from {strength: (adherence, degenerate)}, recording the strengths asked for."""
    asked = []

    def score(s):
        asked.append(s)
        adherence, degenerate = table[s]
        return {"adherence": adherence, "degenerate": degenerate}

    return score, asked


def test_walk_extends_while_the_last_strength_is_best_and_stops_when_adherence_falls(peers):
    score, asked = scorer({1: (.1, 0), 2: (.3, 0), 4: (.5, 0), 8: (.6, 0), 16: (.4, 0), 32: (.9, 0)})
    walk = peers.walk_strengths(score, [2, 1], max_extensions=5)
    assert asked == [1, 2, 4, 8, 16] and walk["stop"] == "fell" and walk["extensions"] == 3
    assert walk["chosen"] == {"strength": 8, "within_limit": True}


def test_walk_stops_past_the_degenerate_limit_and_never_chooses_a_degenerate_strength(peers):
    score, asked = scorer({1: (.2, 0), 2: (.5, .1), 4: (.9, .25), 8: (1, .5)})
    walk = peers.walk_strengths(score, [1, 2], max_degenerate=0.2, max_extensions=5)
    assert asked == [1, 2, 4] and walk["stop"] == "degenerate" and walk["chosen"]["strength"] == 2


def test_walk_stops_at_the_cap_and_ties_go_to_the_gentler_strength(peers):
    score, asked = scorer({s: (0.0, 0) for s in (64, 128, 256, 512)})
    walk = peers.walk_strengths(score, [64], max_extensions=3)
    assert asked == [64, 128, 256, 512] and walk["stop"] == "cap" and walk["chosen"]["strength"] == 64
    score, _ = scorer({1: (.5, .5), 2: (.9, .3)})
    walk = peers.walk_strengths(score, [1, 2], max_degenerate=0.2, max_extensions=0)
    assert walk["chosen"] == {"strength": 2, "within_limit": False}  # none usable: the least degenerate


def test_split_is_disjoint_seeded_and_refuses_too_many(peers):
    prompts = [f"p{i}" for i in range(40)]
    val, test = peers.split_prompts(prompts, 16, 16, seed=0)
    assert len(val) == len(test) == 16 and not set(val) & set(test)
    assert (val, test) == peers.split_prompts(prompts, 16, 16, seed=0) != peers.split_prompts(prompts, 16, 16, seed=1)
    with pytest.raises(ValueError, match="n-val"):
        peers.split_prompts(prompts, 30, 11)


def test_test_prompts_cannot_move_the_chosen_strength(peers, monkeypatch):
    """Outcomes are faked so test prompts favour strength 10 and validation prompts 80: 80 is chosen,
    every strength of the walk is scored on validation prompts only, test prompts once per arm."""
    calls = []

    def fake(model, steer, strength, prompts, checker, new, base=None):
        calls.append((strength, tuple(prompts)))
        best = 10 if prompts[0] in test_set else 80
        n = len(prompts)
        adherent = [1.0] * n if strength == best else [1.0] + [0.0] * (n - 1)  # spread keeps paired stats defined
        row = {"adherent": adherent, "degenerate": [0.0] * n, "distinct": [1.0] * n, "loss": [2.0] + [None] * (n - 1),
               "texts": [str(strength)] * n}
        return row if base is None else {**row, "changed": [1.0] * n}

    from metalens.steering.rules import find_rule, heldout_prompts

    val, test = peers.split_prompts(heldout_prompts(find_rule("ocean")), 3, 3, seed=0)
    test_set = set(test)
    monkeypatch.setattr(peers, "outcomes", fake)
    monkeypatch.setattr(peers, "speed", lambda *a, **k: {"peer_over_metalens": {}})
    out = peers.main(["--model", "tiny", "--n-val", "3", "--n-test", "3", "--new", "2", "--max-extensions", "4",
                      "--metalens", "10", "20"])
    walk = out["walks"]["metalens"]
    assert [s["strength"] for s in walk["steps"]] == [10, 20, 40, 80, 160] and walk["stop"] == "fell"
    assert walk["chosen"]["strength"] == out["test"]["metalens"]["strength"] == 80
    assert out["validation_prompts"] == val and out["test_prompts"] == test
    on_test = [s for s, p in calls if set(p) == test_set]
    chosen = [w["chosen"]["strength"] for w in out["walks"].values()]  # peers too, where importable
    assert sorted(on_test) == sorted([0.0] + chosen)  # unsteered once, each library at its choice once
    assert all(set(p) == set(val) for s, p in calls if set(p) != test_set)


def test_peers_bench_smoke_reports_each_importable_library_and_skips_the_rest(peers, tmp_path):
    out = peers.main(["--smoke", "--metalens", "40", "--steering-vectors", "40", "--repeng", "400",
                      "--json", str(tmp_path / "p.json")])
    present = {name for name, module in (("steering-vectors", "steering_vectors"), ("repeng", "repeng"))
               if importlib.util.find_spec(module)}
    assert set(out["walks"]) == {"metalens"} | present and set(out["test"]) == {"unsteered", "metalens"} | present
    assert set(out["skipped"]) == {"steering-vectors", "repeng"} - present
    for name, r in out["test"].items():
        assert 0 <= r["low"] <= r["adherence"] <= r["high"] <= 1 and 0 <= r["degenerate"] <= 1
        assert len(r["per_prompt"]["adherent"]) == 3
        if name != "unsteered":
            assert r["changed"] > 0  # each library's vector really steers
    assert {(d["peer"], d["measure"]) for d in out["paired_differences"]} == {
        (p, m) for p in present for m in peers.MEASURES}
    assert all(d["low"] <= d["mean_diff"] <= d["high"] and "mde" in d for d in out["paired_differences"])
    speed = out["speed"]
    assert set(speed["seconds"]) == {"unsteered", "metalens"} | present and set(speed["peer_over_metalens"]) == present
    assert all(r["low"] <= r["median"] <= r["high"] for r in speed["over_unsteered"].values())
    assert speed["wall_s"] > 0 and speed["cpu_s"] > 0 and len(speed["load_before"]) == 3
    assert (tmp_path / "p.json").exists()

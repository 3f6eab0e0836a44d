"""bench/steer_peers.py runs in smoke mode on a tiny model; a missing peer is skipped, not fatal."""
import importlib.util

from tests.scripts import load_bench


def test_peers_bench_smoke_reports_each_importable_library_and_skips_the_rest(tmp_path):
    out = load_bench("steer_peers").main(["--smoke", "--metalens", "40", "--steering-vectors", "40", "--repeng", "400",
                                          "--json", str(tmp_path / "p.json")])
    present = {name for name, module in (("steering-vectors", "steering_vectors"), ("repeng", "repeng"))
               if importlib.util.find_spec(module)}
    assert {r["library"] for r in out["rows"]} == {"metalens"} | present
    assert set(out["skipped"]) == {"steering-vectors", "repeng"} - present
    for r in out["rows"]:
        assert 0 <= r["low"] <= r["adherence"] <= r["high"] <= 1 and 0 <= r["degenerate"] <= 1 and r["tokens_per_s"] > 0
    steered = [r for r in out["rows"] if r["strength"]]
    assert steered and all(r["changed"] > 0 for r in steered)  # each library's vector really steers
    assert (tmp_path / "p.json").exists()

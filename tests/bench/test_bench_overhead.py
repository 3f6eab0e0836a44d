"""bench/overhead.py runs every pair on a tiny model and reports microseconds and paired cost ratios."""
import json

import pytest

from tests.scripts import load_bench


def test_overhead_bench_reports_every_pair_with_an_interval(tmp_path):
    out = load_bench("overhead").main(["--model", "tiny", "--new", "3", "--repeats", "3", "--calls", "2",
                                       "--json", str(tmp_path / "overhead.json")])
    assert out["calls_per_repeat"] == 2
    assert json.loads((tmp_path / "overhead.json").read_text())["pairs"].keys() == out["pairs"].keys()
    assert set(out["pairs"]) == {"capture", "cache", "steered", "head read"}
    for row in out["pairs"].values():
        ratio = row["cost_ratio"]
        assert ratio["n"] == 3 and 0 < ratio["low"] <= ratio["median"] <= ratio["high"]
        assert row["baseline_us"] > 0 and row["arm_us"] > 0
        units = 3 if row["unit"] == "step" else 1  # microseconds per call or step, over the 2 calls timed together
        assert row["arm_us"] == pytest.approx(1e6 * sorted(row["seconds"]["arm"])[1] / (2 * units))
        assert row["met"] == (ratio["median"] <= row["target"])
    assert out["pairs"]["steered"]["unit"] == "step" and out["pairs"]["capture"]["unit"] == "call"

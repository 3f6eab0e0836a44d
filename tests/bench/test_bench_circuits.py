"""bench/circuits.py runs end to end on a tiny model and reports a paired exact/attribution ratio."""
import json

from tests.scripts import load_bench


def test_circuits_bench_smoke_reports_a_paired_ratio_with_its_interval(tmp_path):
    out = load_bench("circuits").main(["--model", "tiny", "--task", "induction", "--n", "2", "--repeats", "2",
                                       "--json", str(tmp_path / "circuits.json")])
    assert json.loads((tmp_path / "circuits.json").read_text())["ratio"] == out["ratio"]
    assert out["heads"] == 12 and out["n_pairs"] == 2 and out["repeats"] == 2
    assert all(len(ts) == 2 and min(ts) > 0 for ts in out["seconds"].values())
    ratio = out["ratio"]
    assert ratio["n"] == 2 and 0 < ratio["low"] <= ratio["median"] <= ratio["high"]
    # per-repeat ratios are exact/attribution seconds of the same repeat
    per_repeat = [e / a for e, a in zip(out["seconds"]["exact"], out["seconds"]["attribution"])]
    assert min(per_repeat) <= ratio["median"] <= max(per_repeat)
    assert -1 <= out["spearman"] <= 1

"""bench/capture.py runs end to end on a tiny model and reports paired speed-ups with intervals."""
from tests.scripts import load_bench


def test_capture_bench_smoke_reports_paired_speedups(tmp_path):
    out = load_bench("capture").main(["--model", "tiny", "--batch", "2", "--tokens", "32", "--repeats", "2",
                                      "--json", str(tmp_path / "capture.json")])
    methods = out["methods"]
    assert len(methods) == 5 and (tmp_path / "capture.json").exists()
    base = methods["(a) HF forward (full, with logits)"]["speedup"]
    assert base["median"] == 1.0 and base["low"] == 1.0  # the baseline against itself, pair by pair
    for row in methods.values():
        speedup = row["speedup"]
        assert row["tokens_per_s"] > 0 and speedup["n"] == 2
        assert speedup["low"] <= speedup["median"] <= speedup["high"]
    assert out["mid_site"] == "blocks.6.hook_resid_post" and out["last_site"] == "blocks.7.hook_resid_post"

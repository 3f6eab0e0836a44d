"""bench/introspect.py runs end to end on a tiny model: plain vs head arm, paired ratio with an interval."""
import json
import warnings

from tests.scripts import load_bench


def test_introspect_bench_smoke_reports_a_paired_ratio_and_reads_the_head_every_step(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # e.g. transformers' deprecated `past_key_values`
        out = load_bench("introspect").main(["--model", "tiny", "--tokens", "6", "--batch", "2", "--repeats", "2",
                                             "--json", str(tmp_path / "introspect.json")])
    assert json.loads((tmp_path / "introspect.json").read_text()) == out
    ratio = out["paired_ratio"]
    assert ratio["n"] == 2 and 0 < ratio["low"] <= ratio["median"] <= ratio["high"]
    assert out["plain_ms_per_token"] > 0 and out["head_ms_per_token"] > 0
    assert out["within_target"] == (ratio["median"] <= out["target"] == 1.01)
    # the head arm read K = 16 bins at every decode step of every sample, each a distribution
    assert 1 <= out["decode_steps"] <= 6
    assert out["readout_shape"] == [2, out["decode_steps"], 16] and out["readout_sums_to_one"]

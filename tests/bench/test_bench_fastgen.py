"""bench/fastgen.py runs end to end on a tiny model: two paired ratios, and the fast arms write the hook path's tokens."""
import json

import torch

from tests.scripts import load_bench


def test_fastgen_bench_smoke_reports_paired_ratios_and_the_hook_paths_tokens(tmp_path):
    threads = torch.get_num_threads()
    out = load_bench("fastgen").main(["--model", "tiny", "--batch", "2", "--new", "4", "--repeats", "2",
                                      "--strength", "40", "--threads", "1", "--json", str(tmp_path / "fast.json")])
    assert json.loads((tmp_path / "fast.json").read_text())["paired_ratio"] == out["paired_ratio"]
    assert set(out["paired_ratio"]) == {"fast / default", "fast steered / fast plain"}
    for ratio in out["paired_ratio"].values():
        assert ratio["n"] == 2 and 0 < ratio["low"] <= ratio["median"] <= ratio["high"]
    assert set(out["seconds"]) == {"default generate", "fast plain", "fast steered"} and out["compile_s"] > 0
    assert out["tokens_per_row"] == [4]  # EOS masked: every arm wrote exactly --new tokens per row
    assert out["same_tokens_fast_default"] and out["same_tokens_fast_hook_steered"] and out["steering_changed_tokens"]
    assert torch.get_num_threads() == threads

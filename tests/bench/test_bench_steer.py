"""bench/steer.py runs end to end on a tiny model: paired ratios with intervals, same tokens on both backends."""
import json

import torch

from tests.scripts import load_bench


def test_steer_bench_smoke_reports_paired_ratios_and_identical_steered_tokens(tmp_path):
    threads = torch.get_num_threads()
    out = load_bench("steer").main(["--model", "tiny", "--batch", "3", "--new", "5", "--repeats", "3",
                                    "--strength", "40", "--threads", "1", "--json", str(tmp_path / "steer.json")])
    assert json.loads((tmp_path / "steer.json").read_text())["paired_ratio"] == out["paired_ratio"]
    assert set(out["paired_ratio"]) == {"steered (HF hooks)", "steered (nnsight)", "unsteered (nnsight)"}
    for ratio in [*out["paired_ratio"].values(), out["nnsight_steering_ratio"]]:
        assert ratio["n"] == 3 and 0 < ratio["low"] <= ratio["median"] <= ratio["high"]
    assert all(len(ts) == 3 and min(ts) > 0 for ts in out["seconds"].values())
    assert out["tokens_per_row"] == [5]  # EOS masked: every arm wrote exactly --new tokens per row
    assert out["same_tokens_hf_nnsight"] and out["steering_changed_tokens"]
    assert torch.get_num_threads() == threads  # --threads is undone on return

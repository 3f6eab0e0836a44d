"""The GPU comparisons run on the CPU too (bfloat16 against float32), so their code cannot rot unseen."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


areas = _load(ROOT / "tests" / "gpu" / "areas.py", "gpu_areas")


def test_a_comparison_fails_when_the_result_differs_or_is_not_finite():
    ref = torch.ones(3, 4)
    assert areas.Row("x", "q", "cpu", "float32", areas.rel_diff(ref, ref), 1e-3).ok
    assert not areas.Row("x", "q", "cpu", "float32", areas.rel_diff(ref * 1.01, ref), 1e-3).ok
    assert not areas.Row("x", "q", "cpu", "float32", areas.rel_diff(ref / 0, ref), 1e-3).ok  # inf: NaN diff fails
    assert not areas.Row("x", "q", "cpu", "float32", areas.rel_diff(ref[:2], ref), 1e-3).ok


@pytest.mark.parametrize("check", ["check_capture", "check_steering", "check_circuits"])
def test_bfloat16_on_cpu_agrees_with_float32_within_the_stated_tolerances(check):
    rows = getattr(areas, check)("cpu", torch.bfloat16)
    assert rows and all(r.ok for r in rows), [r.to_dict() for r in rows if not r.ok]
    assert any(r.diff > 0 for r in rows)  # bfloat16 really ran: the model was cast


def test_random_configs_have_the_real_shapes():
    from metalens.testing import RANDOM_CONFIGS

    gemma, llama, big = RANDOM_CONFIGS["gemma-3-270m"], RANDOM_CONFIGS["llama-1b"], RANDOM_CONFIGS["llama-8b"]
    assert (gemma["num_hidden_layers"], gemma["hidden_size"], gemma["num_attention_heads"], gemma["head_dim"],
            gemma["vocab_size"], gemma["sliding_window"]) == (18, 640, 4, 256, 262144, 512)
    assert gemma["layer_types"].count("full_attention") == 3 and gemma["layer_types"][5] == "full_attention"
    assert (llama["num_hidden_layers"], llama["hidden_size"], llama["num_attention_heads"]) == (16, 2048, 32)
    assert (big["num_hidden_layers"], big["hidden_size"], big["intermediate_size"], big["num_key_value_heads"]) == \
        (32, 4096, 14336, 8)
    from metalens.testing import _n_params

    assert 8.0e9 < _n_params(big) < 8.1e9 and 1.2e9 < _n_params(llama) < 1.3e9  # drawn in bfloat16 / in float32


def test_gpu_check_smoke_prints_one_table_and_writes_results(tmp_path, capsys):
    script = _load(ROOT / "tools" / "gpu_check.py", "gpu_check_script")
    out = script.main(["--smoke", "--device", "cpu", "--out", str(tmp_path / "results.json"), "--skip-benches"])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert out["ok"] and saved["ok"] and not out["errors"] and len(saved["checks"]) == len(out["checks"]) > 20
    assert {r["area"] for r in out["checks"]} == {"capture", "neurofeedback", "steering", "circuits", "introspect"}
    assert "gpu-check:" in capsys.readouterr().out


def test_gpu_check_bench_rows_carry_ratio_and_tokens_per_second():
    script = _load(ROOT / "tools" / "gpu_check.py", "gpu_check_script")
    steer = {"paired_ratio": {"steered (HF hooks)": {"median": 0.97, "low": 0.9, "high": 1.0, "n": 4}},
             "tokens_per_s": {"steered (HF hooks)": 900.0, "plain generate": 950.0}}
    [row] = script.headlines("steer", steer)
    assert row["ratio"]["median"] == 0.97 and row["tokens_per_s"] == 900.0 and row["baseline_tokens_per_s"] == 950.0


def test_gpu_check_capture_rows_name_the_limit_and_all_block_arms(tmp_path):
    script = _load(ROOT / "tools" / "gpu_check.py", "gpu_check_script")
    out = script.main(["--smoke", "--device", "cpu", "--out", str(tmp_path / "results.json")])
    capture = next(b for b in out["benches"] if b["bench"] == "capture")
    names = [row["ratio_name"] for row in capture["rows"]]
    assert names == ["capture mid / HF forward", "capture mid / its limit (speed)", "capture last / its limit (speed)",
                     "all blocks (ours) / HF forward", "all blocks (nnsight) / HF fwd"]
    assert all(row["ratio"]["low"] <= row["ratio"]["median"] <= row["ratio"]["high"] for row in capture["rows"])


def test_a_model_too_big_for_float32_is_drawn_in_its_target_dtype(monkeypatch):
    from metalens import testing

    monkeypatch.setattr(testing, "DRAW_IN_FLOAT32_MAX", 0)  # as llama-8b: no float32 copy beside the cast one
    drawn = []
    real = torch.nn.Linear.reset_parameters
    monkeypatch.setattr(torch.nn.Linear, "reset_parameters",
                        lambda self: drawn.append(self.weight.dtype) or real(self))
    small = dict(testing.RANDOM_CONFIGS["llama-1b"], hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=16, vocab_size=512)
    monkeypatch.setitem(testing.RANDOM_CONFIGS, "small", small)
    model = testing.random_model("small", dtype=torch.bfloat16)
    assert drawn and set(drawn) == {torch.bfloat16} and model.dtype == torch.bfloat16
    assert torch.get_default_dtype() == torch.float32  # restored


def test_gpu_check_fastgen_rows_are_the_speedup_and_the_steering_cost():
    script = _load(ROOT / "tools" / "gpu_check.py", "gpu_check_script")
    ratio = {"median": 3.2, "low": 3.0, "high": 3.4, "n": 4}
    out = {"paired_ratio": {"fast / default": ratio, "fast steered / fast plain": {**ratio, "median": 0.97}},
           "tokens_per_s": {"default generate": 500.0, "fast plain": 1600.0, "fast steered": 1550.0}}
    speed, steer = script.headlines("fastgen", out)
    assert speed["ratio"]["median"] == 3.2 and speed["tokens_per_s"] == 1600.0
    assert speed["baseline_tokens_per_s"] == 500.0
    assert steer["ratio"]["median"] == 0.97 and steer["baseline_tokens_per_s"] == 1600.0


def test_gpu_check_skips_benches_past_its_budget_and_says_so(tmp_path, capsys):
    script = _load(ROOT / "tools" / "gpu_check.py", "gpu_check_script")
    out = script.main(["--smoke", "--device", "cpu", "--out", str(tmp_path / "results.json"), "--budget", "0"])
    assert out["benches"] and all(b["skipped"].startswith("budget") for b in out["benches"])
    assert "skipped (budget" in capsys.readouterr().out

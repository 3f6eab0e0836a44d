"""Every area's quick path on CUDA (float32 and bfloat16) agrees with the CPU on the same inputs (tests/gpu/areas.py)."""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

# Loaded by path: on a GPU machine pytest runs with `python3 -P` so that the repo root's `metalens/`
# folder does not shadow the installed package, and `tests` is then not importable.
_spec = importlib.util.spec_from_file_location("gpu_areas", Path(__file__).with_name("areas.py"))
areas = sys.modules["gpu_areas"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(areas)

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
DTYPES = [torch.float32, torch.bfloat16]


def _assert_within(rows):
    bad = [r.to_dict() for r in rows if not r.ok]
    assert rows and not bad, f"outside tolerance: {bad}"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_capture_on_cuda_matches_cpu(dtype):
    _assert_within(areas.check_capture("cuda", dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_neurofeedback_on_cuda_matches_cpu(dtype):
    _assert_within(areas.check_neurofeedback("cuda", dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_steering_train_and_generate_on_cuda_match_cpu(dtype):
    _assert_within(areas.check_steering("cuda", dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_circuits_head_scores_on_cuda_match_cpu(dtype):
    _assert_within(areas.check_circuits("cuda", dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_introspect_train_eval_sample_on_cuda_match_cpu(dtype, tmp_path):
    _assert_within(areas.check_introspect("cuda", dtype, tmp_path))


def test_random_gemma_config_builds_on_cuda_in_bfloat16():
    from metalens.testing import random_model

    model = random_model("gemma-3-270m", device="cuda")
    assert model.device.type == "cuda" and model.dtype == torch.bfloat16
    assert (model.n_layers, model.n_heads, model.d_model, model.d_vocab) == (18, 4, 640, 262144)

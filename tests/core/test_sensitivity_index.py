"""tools/sensitivity_index.py: one results.json per sensitivity folder whose sweeps sit in sub-folders."""
import json

import pytest

from metalens.sensitivity import RESULT_KEYS
from tests.scripts import load_tool

tool = load_tool("sensitivity_index")


def _sweep(min_detectable) -> dict:
    d = {k: None for k in RESULT_KEYS}
    d.update(detection=[{"strength": 1.0, "detected_share": 1.0, "low": 0.44, "high": 1.0, "n_seeds": 3}],
             false_positive_share=0.0, min_detectable_strength=min_detectable)
    return d


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_the_primary_sweep_goes_on_top_and_every_sweep_under_runs(tmp_path):
    _write(tmp_path / "correct" / "results.json", _sweep(0.5))
    _write(tmp_path / "probe" / "results.json", _sweep(None))
    _write(tmp_path / "smollm2" / "correct" / "results.json", _sweep(0.25))
    _write(tmp_path / "bestofn.json", _sweep(0.7))
    _write(tmp_path / "correct" / "runs" / "strength=1.0_seed=0.json", _sweep(9.0))  # a trial record: skipped
    _write(tmp_path / "notes.json", {"detection": []})  # not a sweep: skipped
    out = tool.index(tmp_path, "correct")
    assert out["min_detectable_strength"] == 0.5 and out["primary"] == "correct"
    assert set(out["runs"]) == {"correct", "probe", "smollm2/correct", "bestofn"}
    assert out["runs"]["smollm2/correct"]["min_detectable_strength"] == 0.25
    assert json.loads((tmp_path / "results.json").read_text()) == out
    again = tool.index(tmp_path, "probe")  # the index itself is not a sweep
    assert set(again["runs"]) == set(out["runs"]) and again["min_detectable_strength"] is None


def test_an_unknown_primary_names_the_sweeps_found(tmp_path):
    _write(tmp_path / "correct" / "results.json", _sweep(0.5))
    with pytest.raises(SystemExit, match="no sweep named 'driver'.*correct"):
        tool.index(tmp_path, "driver")
    assert not (tmp_path / "results.json").exists()

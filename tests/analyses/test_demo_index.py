"""`metalens demo`: every area runs on one model; a failing area is reported, not fatal."""
import json

import pytest

from metalens.analyses import demo as demo_module


def _broken(model, out):
    raise RuntimeError("area exploded")


def _fine(model, out):
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.html").write_text("<html></html>")
    return {"layers": model.n_layers, "score": 0.5}


@pytest.fixture()
def saved_tiny(tmp_path):
    from metalens.testing import tiny_model

    model = tiny_model("gemma3", seed=4)
    model.hf.save_pretrained(tmp_path / "m")
    model.tokenizer.save_pretrained(tmp_path / "m")
    return str(tmp_path / "m")


def test_demo_runs_every_area_and_reports_failures_without_stopping(saved_tiny, tmp_path, monkeypatch):
    import sys
    import types

    fake = types.ModuleType("fake_area")
    fake.good, fake.bad = _fine, _broken
    monkeypatch.setitem(sys.modules, "fake_area", fake)
    monkeypatch.setattr(demo_module, "AREA_DEMOS", [("bad", "fake_area", "bad"), ("good", "fake_area", "good")])
    results = demo_module.run_demo(saved_tiny, tmp_path / "out", device="cpu")
    assert results["areas"]["bad"]["status"] == "failed"
    assert "area exploded" in results["areas"]["bad"]["summary"]["error"]
    assert results["areas"]["good"] == {**results["areas"]["good"], "status": "ok", "summary": {"layers": 3, "score": 0.5}}
    index = (tmp_path / "out" / "index.html").read_text()
    assert "href='good/report.html'" in index and "area exploded" in index
    assert json.loads((tmp_path / "out" / "results.json").read_text())["model"]["model"] == saved_tiny

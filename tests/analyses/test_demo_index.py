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
    import metalens

    results = demo_module.run_demo(metalens.load_model(saved_tiny, device="cpu"), out=tmp_path / "out",
                                   progress=False)
    assert results.areas["bad"]["status"] == "failed"
    assert "area exploded" in results.areas["bad"]["summary"]["error"]
    assert results.areas["good"] == {**results.areas["good"], "status": "ok", "summary": {"layers": 3, "score": 0.5}}
    index = (tmp_path / "out" / "index.html").read_text()
    assert "href='good/report.html'" in index and "area exploded" in index
    assert json.loads((tmp_path / "out" / "results.json").read_text())["model"]["model"] == saved_tiny


def _with_headline(model, out):
    out.mkdir(parents=True, exist_ok=True)
    return {"headline": "3 of 4 heads found", "score": 0.75}


def test_index_shows_each_areas_own_headline(tiny_gemma, tmp_path, monkeypatch):
    import sys
    import types

    fake = types.ModuleType("fake_area")
    fake.headline, fake.plain = _with_headline, _fine
    monkeypatch.setitem(sys.modules, "fake_area", fake)
    monkeypatch.setattr(demo_module, "AREA_DEMOS", [("told", "fake_area", "headline"), ("plain", "fake_area", "plain")])
    demo_module.run_demo(tiny_gemma, out=tmp_path / "out")
    index = (tmp_path / "out" / "index.html").read_text()
    assert "<td>3 of 4 heads found</td>" in index and "score=0.75" not in index
    assert "<td>layers=3, score=0.5</td>" in index  # no headline: the summary's numbers


def test_area_demos_name_the_installed_area_modules():
    import importlib

    modules = [m for _, m, _ in demo_module.AREA_DEMOS]
    assert modules == ["metalens.probes", "metalens.steering", "metalens.circuits", "metalens.introspect",
                       "metalens.analyses.atlas"]
    assert callable(getattr(importlib.import_module("metalens.probes"), "demo"))
    assert callable(getattr(importlib.import_module("metalens.analyses.atlas"), "atlas_demo"))


def test_probes_demo_headline_and_reports_reach_the_index(tiny_gemma, tmp_path, monkeypatch):
    from metalens.report import PLOTLY_JS

    monkeypatch.setattr(demo_module, "AREA_DEMOS", [("probes", "metalens.probes", "demo")])
    results = demo_module.run_demo(tiny_gemma, out=tmp_path)
    summary = results.areas["probes"]["summary"]
    assert results.areas["probes"]["status"] == "ok", summary
    headline = summary["headline"]
    assert isinstance(headline, str) and len(headline) < 200 and f"layer {summary['probe_best_layer']}" in headline
    index = (tmp_path / "index.html").read_text()
    assert headline in index
    for page in ("probes/probe_sweep/report.html", "probes/neurofeedback/report.html"):
        assert f"href='{page}'" in index
        assert (tmp_path / page).parent.joinpath(PLOTLY_JS).exists()  # each page's script sits beside it


def test_atlas_demo_headline_and_report_reach_the_index(tiny_gemma, tmp_path, monkeypatch):
    monkeypatch.setattr(demo_module, "AREA_DEMOS", [("atlas", "metalens.analyses.atlas", "atlas_demo")])
    results = demo_module.run_demo(tiny_gemma, out=tmp_path)
    summary = results.areas["atlas"]["summary"]
    assert results.areas["atlas"]["status"] == "ok", summary
    assert summary["headline"].startswith("accuracy ") and "withdraw delta" in summary["headline"]
    assert summary["n_items"] == 24
    index = (tmp_path / "index.html").read_text()
    assert summary["headline"] in index and "href='atlas/atlas.html'" in index


def test_a_demo_result_saves_and_loads_with_the_results_json_keys(tiny_gemma, tmp_path, monkeypatch):
    import sys
    import types

    fake = types.ModuleType("fake_area")
    fake.good = _fine
    monkeypatch.setitem(sys.modules, "fake_area", fake)
    monkeypatch.setattr(demo_module, "AREA_DEMOS", [("good", "fake_area", "good")])
    result = demo_module.run_demo(tiny_gemma, out=tmp_path, progress=False)
    assert set(json.loads((tmp_path / "results.json").read_text())) == {"model", "areas"}
    loaded = demo_module.DemoResult.load(tmp_path)
    assert loaded.areas == json.loads(json.dumps(result.areas)) and loaded.model["model"] == tiny_gemma.name


def test_an_unknown_area_is_refused_naming_the_known_ones():
    with pytest.raises(ValueError, match="Unknown area.*probes"):
        demo_module.DemoConfig(areas=("probs",))

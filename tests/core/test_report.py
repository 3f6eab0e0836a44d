"""Reports: pages share one plotly.js per folder (loaded by a relative script tag), results
files are strict JSON, and tables and prose are escaped."""
import json
import math

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from plotly.offline import get_plotlyjs

from metalens.report import PLOTLY_JS, Html, save_json, to_jsonable, write_report


def figure():
    return go.Figure(go.Scatter(x=[0, 1, 2], y=[1, 3, 2]))


def test_two_reports_in_one_folder_share_one_plotlyjs_file(tmp_path):
    a = write_report(tmp_path / "a.html", "A", [("Fig", figure())])
    b = write_report(tmp_path / "b.html", "B", [("Fig", figure()), ("Again", figure())])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a.html", "b.html", PLOTLY_JS])
    assert (tmp_path / PLOTLY_JS).read_text(encoding="utf-8") == get_plotlyjs()
    for page in (a.read_text(encoding="utf-8"), b.read_text(encoding="utf-8")):
        assert f"<script src='{PLOTLY_JS}'" in page
        assert len(page) < 100_000 < len(get_plotlyjs())  # no embedded copy
        assert get_plotlyjs()[:300] not in page


def test_plotlyjs_loads_before_the_figures_draw(tmp_path):
    page = write_report(tmp_path / "r.html", "R", [("Fig", figure())]).read_text(encoding="utf-8")
    assert page.index(f"src='{PLOTLY_JS}'") < page.index("Plotly.newPlot")


def test_pages_in_subfolders_get_their_own_copy(tmp_path):
    write_report(tmp_path / "index.html", "Index", [("Fig", figure())])
    write_report(tmp_path / "area" / "sub" / "report.html", "Area", [("Fig", figure())])
    assert (tmp_path / PLOTLY_JS).exists() and (tmp_path / "area" / "sub" / PLOTLY_JS).exists()
    assert not (tmp_path / "area" / PLOTLY_JS).exists()


def test_page_without_figures_needs_no_plotlyjs(tmp_path):
    page = write_report(tmp_path / "t.html", "T", [("Rows", [{"a": 1}])]).read_text(encoding="utf-8")
    assert PLOTLY_JS not in page and not (tmp_path / PLOTLY_JS).exists()


def test_a_stale_plotlyjs_is_replaced(tmp_path):
    (tmp_path / PLOTLY_JS).write_text("old version")
    write_report(tmp_path / "r.html", "R", [("Fig", figure())])
    assert (tmp_path / PLOTLY_JS).read_text(encoding="utf-8") == get_plotlyjs()


def test_tables_and_prose_are_escaped_and_html_is_not(tmp_path):
    page = write_report(tmp_path / "r.html", "<T>", [
        ("Rows", [{"name": "<b>x</b>", "value": 0.123456}]),
        ("Prose", "first <p>\n\nsecond"),
        ("Raw", Html("<ul><li>kept</li></ul>")),
    ], metadata={"seed": 3}).read_text(encoding="utf-8")
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<td>0.1235</td>" in page
    assert "<p>first &lt;p&gt;</p><p>second</p>" in page
    assert "<ul><li>kept</li></ul>" in page and "&lt;T&gt;" in page and "&quot;seed&quot;: 3" in page


def test_to_jsonable_converts_tensors_arrays_and_non_finite_numbers(tmp_path):
    data = {"t": torch.tensor([1.5, float("nan")]), "a": np.array([[1, 2]]), "i": np.int64(4),
            "b": np.bool_(True), "inf": float("inf"), "f": np.float32(0.5), 3: (tmp_path,)}
    assert to_jsonable(data) == {"t": [1.5, None], "a": [[1, 2]], "i": 4, "b": True, "inf": None, "f": 0.5,
                                 "3": [str(tmp_path)]}


def test_save_json_writes_strict_json(tmp_path):
    path = save_json(tmp_path / "sub" / "results.json", {"x": [math.nan, 1.0]})

    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    assert json.loads(path.read_text(), parse_constant=refuse) == {"x": [None, 1.0]}
    with pytest.raises(TypeError):
        save_json(tmp_path / "bad.json", {"x": object()})

"""The area's `demo` for `metalens demo`: a report and a one-line headline with its key numbers."""
from metalens.circuits import demo


def test_demo_writes_a_report_and_a_headline_naming_the_top_heads(tiny_gemma, tmp_path):
    summary = demo(tiny_gemma, tmp_path, n=3)
    assert (tmp_path / "report.html").exists() and (tmp_path / "results.json").exists()
    assert summary["top_induction_head"] in summary["headline"]
    assert summary["top_attribution_head"] in summary["headline"]
    assert f"{summary['induction_score']:.2f}" in summary["headline"] and "\n" not in summary["headline"]

"""The HTML page rendered from a report: escaping, and tables without matplotlib or with a broken plot
(the --tcav-html runs and the headless browser are in tests/plugin/test_plugin_reports.py)."""

from __future__ import annotations

import html
import sys
from typing import Any

import pytest

from pytest_tcav.reports import html as report_html
from pytest_tcav.reports import json as report_json
from pytest_tcav.reports import plots as report_plots
from tests.helpers.report_records import ENV, PLOTS, layer, record, stability_record


def test_user_text_is_escaped() -> None:
    evil = '<script>alert("x")</script>&'
    report = report_json.build_report(
        [record(nodeid=f"t.py::test[{evil}]", concept=evil, target=evil, message=evil,
                results=[layer(evil)], custom=evil)], env={**ENV, "device": evil})
    for mpl in (None, True):
        page = report_html.render_html(report, mpl=mpl)
        assert "<script" not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in page


def test_without_matplotlib_the_page_has_tables_and_says_how_to_get_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    report = report_json.build_report([record(), stability_record()], env=ENV)
    if PLOTS:
        with_plots = report_html.render_html(report)
        assert with_plots.count("data:image/png;base64,") == 3  # two checks and one before/after
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # "import matplotlib" now raises ImportError
    for name in [n for n in sys.modules if n.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    assert report_plots.load_matplotlib() is None
    page = report_html.render_html(report)
    assert "<img" not in page and 'id="no-plots"' in page and html.escape(report_plots.PLOT_HINT) in page
    assert "pytest-tcav[report]" in page
    assert page.count('<table class="layers">') == 2 and "p corrected" in page
    assert page.count('<table class="stability">') == 1


def test_a_plot_that_cannot_be_drawn_leaves_the_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> str:
        raise ValueError("bad numbers")

    monkeypatch.setattr(report_plots, "check_plot", broken)
    page = report_html.render_html(report_json.build_report([record()], env=ENV))
    assert "could not be drawn (ValueError: bad numbers)" in page and '<table class="layers">' in page

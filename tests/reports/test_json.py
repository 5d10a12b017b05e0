"""The JSON report built from records: strict JSON for non-finite numbers, unknown keys kept (the
--tcav-json runs are in tests/plugin/test_plugin_reports.py)."""

from __future__ import annotations

import json
from pathlib import Path

from pytest_tcav.reports import html as report_html
from pytest_tcav.reports import json as report_json
from tests.helpers.report_records import ENV, layer, record, stability_record, validate


def test_non_finite_numbers_become_strings_and_the_json_is_strict() -> None:
    report = report_json.build_report([record(results=[layer("a", t_statistic=float("inf"),
                                                             null_sd=float("nan"))])], env=ENV)
    text = report_json.dumps(report)
    assert "NaN" not in text.replace('"NaN"', "") and "Infinity" not in text.replace('"Infinity"', "")
    data = json.loads(text)
    (check,) = data["checks"]
    assert check["results"][0]["t_statistic"] == "Infinity" and check["results"][0]["null_sd"] == "NaN"
    assert report_json.number("Infinity") == float("inf") and report_json.number("-Infinity") == float("-inf")
    assert check["id"] == "t.py::test_x#0" and "seq" not in check and check["test"] == "t.py::test_x"


def test_unknown_record_keys_are_kept_and_shown(tmp_path: Path) -> None:
    report = report_json.build_report([stability_record()], env=ENV)
    validate(json.loads(report_json.dumps(report)))
    (check,) = report["checks"]
    assert check["custom"] == {"anything": [1, 2]} and check["before"]["a"]["score"] == 1.0
    page = report_html.render_html(report, mpl=None)
    assert "Stability: baseline (before) vs this run (after)" in page
    assert "1.00 → 0.40" in page and "significant → not significant" in page  # before → after per layer
    assert "zebra-striped" in page and "comparison: moved" in page
    assert "More" in page and "anything" in page


def test_layer_names_with_selectors_survive_the_report_and_its_reading_back(tmp_path: Path) -> None:
    names = ["rnn[0]", "rnn[1][0]", "encoder['last_hidden_state']", 'encoder["pooler_output"]']
    report = report_json.build_report([record(layers=names, results=[layer(name) for name in names])], env=ENV)
    path = report_json.write_json(tmp_path / "report.json", report)
    stored = report_json.StoredReport.from_dict(report_json.load(path))
    (check,) = stored.checks
    assert check.record.layers == names and [r.layer for r in check.record.results] == names
    assert 'encoder[\\"pooler_output\\"]' in path.read_text(encoding="utf-8")

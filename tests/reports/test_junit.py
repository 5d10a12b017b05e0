"""A concept check's record as JUnit XML properties: names and values (the --junitxml runs are in
tests/plugin/test_plugin_junit.py)."""

from __future__ import annotations

from pytest_tcav.checks.records import CheckRecord
from pytest_tcav.reports.junit import properties


def test_properties_of_a_stability_check_say_which_layers_moved() -> None:
    record = {
        "nodeid": "t.py::test_stable", "concept": "striped", "target": "zebra (0)", "layers": ["a", "b"],
        "expectation": "stable", "direction": "positive", "outcome": "failed", "message": "moved",
        "results": [
            {"layer": "a", "score": 0.5, "p_value": 0.25, "p_corrected": 0.5, "cav_accuracy": 0.75,
             "significant": False},
            {"layer": "b", "score": 1.0, "p_value": 1e-6, "p_corrected": 2e-6, "cav_accuracy": 1.0,
             "significant": True},
        ],
        "stability": {"action": "checked", "moved": ["a"],
                      "layers": [{"layer": "a", "moved": True}, {"layer": "b", "moved": False}]},
    }
    props = dict(properties(CheckRecord.from_dict(record), 2))
    assert props["tcav[2].verdict"] == "moved on 1/2" and props["tcav[2].message"] == "moved"
    assert props["tcav[2].layer[a].moved"] == "true" and props["tcav[2].layer[b].moved"] == "false"
    assert props["tcav[2].layer[a].verdict"] == "not significant" and props["tcav[2].layer[b].p_value"] == "1e-06"
    assert "tcav[2].layer[a].moved" not in dict(properties(CheckRecord.from_dict({**record, "stability": None}), 2))

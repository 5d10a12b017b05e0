"""The end-of-run table of concept checks, from plain records (the runs that print it are in
tests/plugin/test_plugin_summary.py)."""

from __future__ import annotations

import json

from pytest_tcav.checks.records import CheckRecord
from pytest_tcav.reports.terminal import summary_lines


def test_summary_lines_from_records() -> None:
    records = [
        {"nodeid": "b.py::t", "seq": 0, "concept": "c", "target": "1", "layers": ["l1", "l2"],
         "expectation": "significant", "direction": "positive", "require": "all", "outcome": "passed",
         "results": [{"layer": "l1", "score": 1.0, "p_value": 1e-6, "p_corrected": 2e-6, "significant": True,
                      "cav_accuracy": 0.9},
                     {"layer": "l2", "score": 0.5, "p_value": 0.2, "p_corrected": 0.2, "significant": False,
                      "cav_accuracy": 0.9}]},
        {"nodeid": "a.py::t", "seq": 0, "concept": "d", "target": "2", "layers": ["l1"],
         "expectation": "insignificant", "direction": "either", "require": "all", "outcome": "error",
         "results": []},
    ]
    json.dumps(records)  # what crosses from xdist workers is plain JSON
    lines = summary_lines(map(CheckRecord.from_dict, records))
    assert [line.split()[0] for line in lines[2:4]] == ["a.py::t", "b.py::t"]  # sorted by test id
    # records written before effects existed show n/a for them
    assert lines[3].split()[4:] == ["l1,l2", "1.00", "0.50", "2.0e-06", "0.200", "n/a", "n/a", "n/a", "n/a",
                                    "significant", "on", "1/2", "passed"]
    assert lines[-3:] == ["2 concept check(s): 1 passed, 1 error(s)", "raised before a verdict:", "  a.py::t: error"]
    records[1].update(error="TypeError", message="bad shape\nmore")
    assert lines[:-1] == summary_lines(map(CheckRecord.from_dict, records))[:-1]
    assert summary_lines(map(CheckRecord.from_dict, records))[-1] == "  a.py::t: TypeError: bad shape"
    assert summary_lines([]) == []

"""The end-of-run table of concept checks, from plain records (the runs that print it are in
tests/plugin/test_plugin_summary.py)."""

from __future__ import annotations

import json

from pytest_tcav.checks.records import CheckRecord
from pytest_tcav.reports.terminal import DROP_ORDER, HEADER, fitted, result_label, short_test_id, summary_lines
from pytest_tcav.tables import render_table


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


# -- a table that fits the terminal ----------------------------------------------------------

_FULL_ROW = ("tests/animals/test_animal_concepts.py::test_texture_makes_the_animal[zebra-striped]", "striped",
             "zebra (0)", "significant", "features.conv2,features.conv3", "1.00 1.00", "1.1e-05 3.2e-07",
             "8.43 13.96", "2.92 2.85", "significant", "passed")


def test_a_table_that_fits_is_left_whole() -> None:
    rows = [_FULL_ROW]
    assert fitted(rows, None) == (HEADER, rows, [])
    assert fitted(rows, 1000) == (HEADER, rows, [])


def test_columns_are_left_out_in_their_order_and_the_four_that_matter_stay() -> None:
    rows = [_FULL_ROW]
    dropped_before = 0
    for width in range(200, 30, -1):
        header, shown, dropped = fitted(rows, width)
        assert dropped == list(DROP_ORDER[:len(dropped)])  # always a prefix of the order
        assert len(dropped) >= dropped_before  # narrower never shows more columns
        dropped_before = len(dropped)
        assert {"test", "concept", "verdict", "result"} <= set(header)
        assert [name for name in HEADER if name not in dropped] == list(header)
        if width >= 56:  # the four columns with the test's function name whole fit from here
            assert all(len(line) <= width for line in render_table([header, *shown])), width
    # the order: effects first, then p-values, scores, layers, the expectation, the target
    assert DROP_ORDER == ("detect.", "effect", "p (corr.)", "score", "layers", "expected", "target")
    header, shown, dropped = fitted(rows, 150)
    assert dropped == ["detect.", "effect"]  # enough: the test column has room for the function name
    assert shown[0][0] == "test_texture_makes_the_animal[ze...d]"
    header, shown, dropped = fitted(rows, 120)
    assert dropped == list(DROP_ORDER[:5])  # the test's name needs the room of the layers
    assert shown[0][0] == "...nimal_concepts.py::test_texture_makes_the_animal[zebra-striped]"
    header, shown, dropped = fitted(rows, 80)
    assert dropped == list(DROP_ORDER[:6])
    assert shown[0][0] == "test_texture_makes_the_animal[zeb...ed]"  # the function name whole
    header, shown, dropped = fitted(rows, 60)
    assert dropped == list(DROP_ORDER)  # no more room for the function name: shortened in its middle
    assert shown[0][0] == "test_texture_m...ebra-striped]"


def test_short_test_ids_keep_the_function_name() -> None:
    nodeid = "tests/plugin/test_plugin_summary.py::TestX::test_layers[conv-relu-abc]"
    assert short_test_id(nodeid, len(nodeid)) == nodeid
    assert short_test_id(nodeid, 60) == "tests/...lugin_summary.py::TestX::test_layers[conv-relu-abc]"  # path's middle
    assert short_test_id(nodeid, 40) == "...py::TestX::test_layers[conv-relu-abc]"  # only its end
    assert short_test_id(nodeid, 30) == "TestX::test_layers[conv...abc]"  # the parameters' middle
    assert short_test_id(nodeid, 20) == "TestX::te...elu-abc]"  # and only then the name's
    for width in range(1, 80):
        assert len(short_test_id(nodeid, width)) <= width
    assert short_test_id("a_very_long_name_without_a_path_at_all", 20) == "a_very_lo...h_at_all"


def test_every_line_fits_the_width_and_a_note_says_what_was_left_out() -> None:
    records = [CheckRecord.from_dict({
        "nodeid": _FULL_ROW[0].replace("zebra", f"zebra{k}"), "seq": 0, "concept": "striped", "target": "zebra (0)",
        "layers": ["features.conv2", "features.conv3"], "expectation": "significant", "direction": "positive",
        "outcome": "error", "error": "LayerError", "message": "no layer named 'features.conv9' in the model " * 4,
        "results": [],
    }) for k in range(2)]
    for width in (60, 80, 120):
        lines = summary_lines(records, width)
        assert all(len(line) <= width for line in lines), (width, lines)
        note = " ".join(line.strip() for line in lines if line.startswith("(left out") or line.startswith("    "))
        assert note.startswith(f"(left out to fit {width} columns: detect., effect") and "-v shows" in note
    assert "(left out" not in "\n".join(summary_lines(records))  # no width: the whole table
    assert max(map(len, summary_lines(records))) > 120


def test_a_caught_check_is_counted_apart() -> None:
    base = {"seq": 0, "concept": "c", "target": "1", "layers": ["l1"], "expectation": "significant",
            "direction": "positive", "results": []}
    records = [CheckRecord.from_dict({**base, "nodeid": "a.py::t", "outcome": "failed", "caught": True}),
               CheckRecord.from_dict({**base, "nodeid": "b.py::t", "outcome": "error", "error": "LayerError",
                                      "caught": True}),
               CheckRecord.from_dict({**base, "nodeid": "c.py::t", "outcome": "failed"})]
    assert [result_label(r) for r in records] == ["caught", "caught", "FAILED"]
    lines = summary_lines(records)
    assert lines[-1] == "3 concept check(s): 0 passed, 1 failed, 2 caught by their tests"
    assert not any("raised before a verdict" in line for line in lines)  # its test expected the error
    assert records[0].to_dict()["caught"] is True and "caught" not in records[2].to_dict()

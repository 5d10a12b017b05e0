"""The typed record of a check: its plain form (the JSON report's fields, in their order), and that form
read back, as pytest-xdist workers send it and stored reports hold it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from pytest_tcav.checks import records
from pytest_tcav.checks.baseline_file import Baseline
from pytest_tcav.checks.calibration import LayerRate
from pytest_tcav.checks.stability import StabilityResult, compare
from pytest_tcav.engine.results import TCAVResult
from tests.helpers.results import STATS, layer_result, tcav_result

HEAD = ["nodeid", "seq", "concept", "target", "layers", "expectation", "direction", "require", "score_range"]
MEASURED = ["alpha", "margin", "results", "model_fingerprint", "concept_fingerprint", "settings"]


def result() -> TCAVResult:
    return tcav_result(layer_result("a", score=0.9, statistics=STATS), layer_result("b", score=0.5, statistics=STATS,
                                                                                   significant=False))


def round_trip(record: records.CheckRecord) -> dict[str, object]:
    plain = record.to_dict()
    again = records.CheckRecord.from_dict(json.loads(json.dumps(plain)))
    assert again == record and again.to_dict() == plain  # what crosses from an xdist worker comes back whole
    return plain


def test_a_significance_check_keeps_the_order_of_its_fields() -> None:
    entry = records.check_record("striped", 0, ["a", "b"], "significant", "positive")
    entry.against = ["dots"]
    entry.power_warning = "too few random sets"
    entry = records.with_result(entry, result())
    entry.calibration = [LayerRate("a", 1, 20, 0.05, 0.001, 0.25)]
    plain = round_trip(records.finished(entry, "failed", "why"))
    assert list(plain) == [*HEAD, "against", "power_warning", *MEASURED, "calibration", "outcome", "message"]
    assert plain["results"][0]["layer"] == "a" and plain["settings"]["correction"] == "holm"


def test_a_check_that_raised_before_measuring_lists_its_results_last() -> None:
    entry = records.check_record("striped", 0, ["a"], "insignificant", "positive", "any")
    plain = round_trip(records.failed_to_run(entry, "no layer 'a'", "LayerError"))
    assert list(plain) == [*HEAD, "outcome", "error", "message", "results"] and plain["results"] == []
    plain = round_trip(records.failed_to_run(records.with_result(entry, result()), "crash", "TypeError"))
    assert list(plain) == [*HEAD, *MEASURED, "outcome", "error", "message"]


def test_a_stability_check_carries_its_account_and_both_sides() -> None:
    measured = result()
    entry = records.check_record("striped", 0, ["a", "b"], "stable", "either")
    entry.stability = info = records.stability_info("zebra", 0.1, 0.0)
    plain = round_trip(records.failed_to_run(entry, "missing", "BaselineError"))
    assert list(plain) == [*HEAD, "results", "stability", "outcome", "error", "message"]
    before = Baseline.from_result(measured, "zebra", test=None)
    comparisons = compare(before, measured, tolerance=0.1, statistic_tolerance=0.0, alpha=0.05, correction="holm")
    entry = records.with_result(entry, measured)
    records.with_comparison(info, StabilityResult("zebra", Path("z"), measured, before, comparisons))
    records.with_sides(entry, before, before)
    info.action, info.obtained = "checked", "z.obtained"
    plain = round_trip(records.finished(entry, "failed", "moved"))
    assert list(plain) == [*HEAD, "results", "stability", *MEASURED[:2], *MEASURED[3:], "before", "after",
                           "outcome", "message"]
    assert list(plain["stability"]) == ["baseline", "path", "action", "tolerance", "statistic_tolerance",
                                        "model_changed", "layers", "moved", "obtained"]
    assert entry.stability is info and [c.layer for c in info.layers] == ["a", "b"] and info.moved == []


def test_a_scored_record_keeps_the_command_lines_layout() -> None:
    plain = round_trip(records.scored(2, result(), ["a", "b"], "positive"))
    assert list(plain) == [*HEAD, "alpha", "results", "model_fingerprint", "concept_fingerprint", "settings",
                           "outcome", "message"]
    assert plain["seq"] == 2 and plain["outcome"] == "scored"


def test_an_old_or_foreign_record_reads_back_with_defaults_and_its_unknown_keys() -> None:
    record = records.CheckRecord.from_dict({
        "concept": "c", "target": "1", "layers": ["l"], "expectation": "significant", "outcome": "passed",
        "results": [{"layer": "l", "score": 1.0, "p_value": 1e-6, "p_corrected": "NaN", "significant": True,
                     "t_statistic": "Infinity", "cav_accuracy": 0.9}],
        "custom": {"anything": [1]}})
    (layer,) = record.results
    assert layer.verdict == "significant" and math.isnan(layer.effect) and layer.t_statistic == math.inf
    assert math.isnan(layer.p_corrected) and layer.null_scores == [] and record.extra == {"custom": {"anything": [1]}}
    assert record.to_dict()["custom"] == {"anything": [1]}


def test_the_xdist_payload_says_its_version() -> None:
    entry = records.finished(records.check_record("c", 1, ["l"], "significant", "positive"), "passed")
    sent = json.loads(json.dumps(records.payload([entry])))
    assert sent["version"] == records.RECORD_VERSION and records.from_payload(sent) == [entry]
    with pytest.raises(ValueError, match="version 99"):
        records.from_payload({**sent, "version": 99})

"""Two stored reports compared check by check: verdict changes, moved scores, noise, and the renderings
(the ``pytest-tcav diff`` command is tested in tests/cli/test_diff.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pytest_tcav.checks.records import CheckRecord
from pytest_tcav.checks.stability import layer_moved, welch_p
from pytest_tcav.engine.statistics import adjust_p_values
from pytest_tcav.reports import diff as report_diff
from pytest_tcav.reports.json import build_report

SPREAD = [-0.02, -0.01, 0.0, 0.01, 0.02]  # the per-random-set statistics' spread around their mean


def layer(name: str, *, score: float = 1.0, statistic: float = 0.3, significant: bool = True,
          p: float = 1e-4) -> dict[str, Any]:
    return {"layer": name, "score": score, "statistic": statistic, "null_mean": 0.0, "null_sd": 0.02,
            "p_value": p, "p_corrected": p, "cav_accuracy": 0.95, "significant": significant,
            "concept_statistics": [statistic + d for d in SPREAD], "concept_scores": [score] * 5}


def record(test: str | None, concept: str, *layers: dict[str, Any], target: str = "zebra (0)",
           outcome: str = "passed", **extra: Any) -> dict[str, Any]:
    return {"nodeid": test, "seq": 0, "concept": concept, "target": target, "layers": [r["layer"] for r in layers],
            "expectation": "significant", "direction": "positive", "alpha": 0.05, "results": list(layers),
            "outcome": outcome, "message": None, "model_fingerprint": "m1",
            "settings": {"method": "gradient", "seed": 0, "n_random": 5, "correction": "holm"}, **extra}


def compare(old: list[dict[str, Any]], new: list[dict[str, Any]], **kwargs: Any) -> report_diff.ReportDiff:
    return report_diff.diff_reports(build_report(map(CheckRecord.from_dict, old), env={}),
                                    build_report(map(CheckRecord.from_dict, new), env={}), welch=welch_p,
                                    adjust=adjust_p_values, moved=layer_moved, **kwargs)


def changes(result: report_diff.ReportDiff) -> dict[tuple[str | None, str], str]:
    return {(c.test, c.concept): c.change for c in result.checks}


T = "test_a.py::test_zebra"


BASE = [record(T, "striped", layer("conv2"), layer("conv3")),
        record(T, "watermark", layer("conv2", score=0.4, statistic=0.0, significant=False, p=0.6))]


def test_identical_reports_have_no_change() -> None:
    result = compare(BASE, BASE)
    assert not result.changed and set(changes(result).values()) == {"unchanged"}
    assert all(layer.welch_p == 1.0 for check in result.checks for layer in check.layers)


def test_a_flipped_layer_is_a_verdict_change_and_is_named() -> None:
    new = [BASE[0], record(T, "watermark", layer("conv2", score=1.0, statistic=0.3), outcome="failed")]
    result = compare(BASE, new)
    assert changes(result) == {(T, "striped"): "unchanged", (T, "watermark"): "verdict"}
    assert report_diff.flipped(result) == ["watermark for zebra (0)"]
    text = report_diff.render_text(result)
    row = next(line for line in text.splitlines() if line.startswith(T))
    assert "watermark" in row and "not significant → significant" in row and "0.40 → 1.00" in row
    assert "passed → failed" in row and row.endswith("VERDICT")
    assert "striped" not in text.split("\n", 1)[1].split("concept check(s)")[0]  # unchanged rows are left out
    assert "verdicts changed: watermark for zebra (0)" in text
    assert "striped" in report_diff.render_text(result, everything=True)


@pytest.mark.parametrize("score, moved", [(0.85, True), (0.95, False)])
def test_a_score_moves_beyond_the_tolerance_on_a_significant_layer(score: float, moved: bool) -> None:
    new = [record(T, "striped", layer("conv2", score=score), layer("conv3")), BASE[1]]
    result = compare(BASE, new)
    assert changes(result)[(T, "striped")] == ("moved" if moved else "unchanged")
    assert result.checks[0].layers[0].score_moved is moved
    assert compare(BASE, new, tolerance=0.2).changed is False


def test_a_score_swinging_where_the_concept_is_significant_in_neither_run_is_noise() -> None:
    new = [BASE[0], record(T, "watermark", layer("conv2", score=0.9, statistic=0.0, significant=False, p=0.6))]
    assert not compare(BASE, new).changed


def test_the_statistic_moves_only_beyond_the_random_sets_spread() -> None:
    shifted = [record(T, "striped", layer("conv2", statistic=0.4), layer("conv3")), BASE[1]]
    result = compare(BASE, shifted)
    conv2 = result.checks[0].layers[0]
    assert conv2.statistic_moved and conv2.welch_p_corrected is not None and conv2.welch_p_corrected < 0.05
    assert changes(result)[(T, "striped")] == "moved"
    within = [record(T, "striped", layer("conv2", statistic=0.305), layer("conv3")), BASE[1]]
    assert not compare(BASE, within).changed  # 0.005 against a spread of 0.016: noise
    assert not compare(BASE, shifted, statistic_tolerance=0.2).changed


def test_checks_and_layers_that_appear_or_vanish() -> None:
    new = [record(T, "striped", layer("conv2"), layer("conv4")),
           record("test_a.py::test_new", "dotted", layer("conv2"), target="leopard (1)")]
    result = compare(BASE, new)
    assert changes(result) == {(T, "striped"): "layers", ("test_a.py::test_new", "dotted"): "appeared",
                               (T, "watermark"): "vanished"}
    assert result.counts() == {"verdict": 0, "layers": 1, "moved": 0, "appeared": 1, "vanished": 1, "unchanged": 0}
    striped = next(c for c in result.checks if c.concept == "striped")
    assert [(lay.layer, lay.change) for lay in striped.layers] == [
        ("conv2", "unchanged"), ("conv4", "appeared"), ("conv3", "vanished")]
    text = report_diff.render_text(result)
    assert "(layer added)" in text and "(layer removed)" in text and "new" in text and "gone" in text


def test_checks_of_one_test_pair_up_in_order_and_errors_compare() -> None:
    twice = [record(T, "striped", layer("conv2")), {**record(T, "striped", layer("conv2")), "seq": 1}]
    erred = [record(T, "striped", layer("conv2")), {**record(T, "striped", outcome="error"), "seq": 1}]
    assert not compare(twice, twice).changed
    result = compare(twice, erred)
    assert [c.change for c in result.checks] == ["unchanged", "verdict"]
    assert "significant → error" in report_diff.render_text(result)


def test_an_xfail_marker_alone_changes_the_result() -> None:
    new = [record(T, "striped", layer("conv2"), layer("conv3"), outcome="failed", xfail=True), BASE[1]]
    result = compare([{**BASE[0], "outcome": "failed"}, BASE[1]], new)
    assert changes(result)[(T, "striped")] == "verdict"
    assert "failed → xfailed" in report_diff.render_text(result)


def test_settings_that_differ_are_noted() -> None:
    new = [{**BASE[0], "settings": {**BASE[0]["settings"], "seed": 1}}, BASE[1]]
    result = compare(BASE, new, old_name="main.json", new_name="pr.json")
    assert result.checks[0].notes == ["settings differ: seed 0 → 1"]
    assert "note:" not in report_diff.render_text(result)  # notes come with changed checks only
    assert "seed 0 → 1" in report_diff.render_text(result, everything=True)


def test_markdown_escapes_cells_and_json_is_strict() -> None:
    weird = "test_a.py::test_x[a|b]"
    old = [record(weird, "<b>", layer("conv2", significant=False, p=0.5))]
    new = [record(weird, "<b>", {**layer("conv2"), "t_statistic": float("inf")})]
    result = compare(old, new, old_name="main.json", new_name="pr.json")
    text = report_diff.render_markdown(result)
    assert text.startswith("### Concept tests: 1 verdict(s) changed")
    row = next(line for line in text.splitlines() if line.startswith("| `test_a"))
    assert "a\\|b" in row and "&lt;b&gt;" in row and "<b>" not in row
    assert row.count(" | ") == len(report_diff.HEADER) - 1 and row.endswith("**VERDICT** |")
    data = report_diff.to_json(result)
    json.dumps(data, allow_nan=False)
    assert data["schema"] == "pytest-tcav/diff" and data["changed"] is True
    assert data["checks"][0]["layers"][0]["significant"] == {"old": False, "new": True}
    nothing = report_diff.render_markdown(compare(old, old))
    assert nothing.startswith("### Concept tests: no concept check changed") and "| test |" not in nothing

"""``pytest-tcav diff`` and ``pytest-tcav report``: two stored reports compared; one rendered as HTML."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_tcav.checks.stability import layer_moved, welch_p
from pytest_tcav.engine.statistics import adjust_p_values
from pytest_tcav.reports import diff as report_diff
from pytest_tcav.reports.json import build_report, write_json
from tests.cli.test_main import TINY, run_main

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
    return report_diff.diff_reports(build_report(old, env={}), build_report(new, env={}), welch=welch_p,
                                    adjust=adjust_p_values, moved=layer_moved, **kwargs)


def changes(result: report_diff.ReportDiff) -> dict[tuple[str | None, str], str]:
    return {(c.test, c.concept): c.change for c in result.checks}


T = "test_a.py::test_zebra"
BASE = [record(T, "striped", layer("conv2"), layer("conv3")),
        record(T, "watermark", layer("conv2", score=0.4, statistic=0.0, significant=False, p=0.6))]


# -- the comparison ----------------------------------------------------------------------


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


# -- the commands ------------------------------------------------------------------------


@pytest.fixture
def reports(tmp_path: Path) -> tuple[Path, Path]:
    old = write_json(tmp_path / "old.json", build_report(BASE, env={}))
    new = [BASE[0], record(T, "watermark", layer("conv2", score=1.0, statistic=0.3), outcome="failed")]
    return old, write_json(tmp_path / "new.json", build_report(new, env={}))


def test_diff_exit_status_and_formats(reports: tuple[Path, Path]) -> None:
    old, new = map(str, reports)
    code, out, err = run_main("diff", old, old)
    assert code == 0 and err == "" and "2 concept check(s) compared: 2 unchanged" in out
    code, out, err = run_main("diff", old, new)
    assert code == 1 and err == "" and "verdicts changed: watermark for zebra (0)" in out
    code, out, _ = run_main("diff", old, new, "--markdown")
    assert code == 1 and out.startswith("### Concept tests: 1 verdict(s) changed")
    code, out, _ = run_main("diff", old, new, "--json")
    data = json.loads(out)
    assert code == 1 and data["summary"]["verdict"] == 1 and len(data["checks"]) == 2
    assert run_main("diff", old, new, "--tolerance", "0.5")[0] == 1


@pytest.mark.parametrize("content, message", [
    (None, "missing.json: no such file"),
    ("{", "not valid JSON"),
    ('{"schema": "other"}', "is not a pytest-tcav report"),
    ('{"schema": "pytest-tcav/report", "version": 9, "checks": []}', "report version 9"),
    ('{"schema": "pytest-tcav/report", "version": 1, "checks": {}}', "without a list of checks"),
    ('{"schema": "pytest-tcav/report", "version": 1, "checks": [{"id": "x"}]}', "check 0 lacks test, index"),
    (b"\xff\xfe", "not UTF-8"),
])
def test_unreadable_or_invalid_reports_are_usage_errors(tmp_path: Path, reports: tuple[Path, Path],
                                                        content: str | bytes | None, message: str) -> None:
    path = tmp_path / "missing.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    for argv in (["diff", str(reports[0]), str(path)], ["report", str(path), "--html", str(tmp_path / "r.html")]):
        code, out, err = run_main(*argv)
        assert code == 2 and out == "", argv
        assert err.startswith(f"pytest-tcav {argv[0]}: error: ") and message in err, err
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r.html").exists()


def test_diff_usage_errors(reports: tuple[Path, Path]) -> None:
    old, new = map(str, reports)
    assert "not allowed with argument" in run_main("diff", old, new, "--json", "--markdown")[2]
    assert run_main("diff", old, new, "--tolerance", "-1")[0] == 2
    code, _, err = run_main("diff", old, new, "--tolerance", "2")
    assert code == 2 and "--tolerance must be between 0 and 1" in err
    code, _, err = run_main("diff", old)
    assert code == 2 and "required: NEW.json" in err
    code, text, _ = run_main("diff", "--help")
    assert code == 0 and "Exit status: 0 nothing changed, 1 something changed, 2 usage error" in text


def test_report_renders_a_stored_report(reports: tuple[Path, Path], tmp_path: Path) -> None:
    code, out, err = run_main("report", str(reports[1]), "--html", str(tmp_path / "out" / "page.html"))
    assert code == 0 and err == "" and out.strip() == f"HTML report: {tmp_path / 'out' / 'page.html'}"
    page = (tmp_path / "out" / "page.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "watermark" in page and T in page
    code, _, err = run_main("report", str(reports[1]))
    assert code == 2 and "--html" in err
    (tmp_path / "file").write_text("")
    code, _, err = run_main("report", str(reports[1]), "--html", str(tmp_path / "file" / "page.html"))
    assert code == 1 and err.startswith("pytest-tcav: error: ")


SWAPPED = '''
from tiny_model import EdgeNet


def load():
    """EdgeNet "retrained" the other way round: class 1 now means vertical edges."""
    model = EdgeNet()
    model.fc.weight.data.mul_(-1)
    return model
'''


def test_score_reports_of_a_model_and_its_retrained_version(in_project: Path) -> None:
    (in_project / "swapped.py").write_text(SWAPPED)
    # relu only: there the framed noise's statistic is null, so the swapped model (which negates every
    # gradient) leaves it where it was; at conv its CAVs agree closely enough that the sign flip shows
    tiny = [("relu" if value == "conv,relu" else value) for value in TINY]
    base = ["score", *tiny, "--concept", "horizontal,noisy"]
    assert run_main(*base, "--json", "good.json")[0] == 0
    assert run_main(*base, "--json", "again.json")[0] == 0
    assert run_main(*base, "--model", "swapped:load", "--json", "retrained.json")[0] == 0
    code, out, _ = run_main("diff", "good.json", "again.json")
    assert code == 0 and "2 unchanged" in out  # a rerun is no change
    code, out, _ = run_main("diff", "good.json", "retrained.json")
    assert code == 1 and "verdicts changed: horizontal for 1" in out
    rows = [line for line in out.splitlines() if line.startswith("(outside a test)")]
    assert rows and all("horizontal" in row for row in rows)
    assert any("significant → not significant" in row for row in rows)

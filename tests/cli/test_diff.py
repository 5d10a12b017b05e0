"""``pytest-tcav diff`` and ``pytest-tcav report``: two stored reports compared; one rendered as HTML.

The comparison itself is tested in tests/reports/test_diff.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_tcav.checks.records import CheckRecord
from pytest_tcav.reports.json import build_report, write_json
from tests.cli.test_main import TINY, run_main
from tests.reports.test_diff import BASE, T, layer, record

# -- the commands ------------------------------------------------------------------------


@pytest.fixture
def reports(tmp_path: Path) -> tuple[Path, Path]:
    old = write_json(tmp_path / "old.json", build_report(map(CheckRecord.from_dict, BASE), env={}))
    new = [BASE[0], record(T, "watermark", layer("conv2", score=1.0, statistic=0.3), outcome="failed")]
    return old, write_json(tmp_path / "new.json", build_report(map(CheckRecord.from_dict, new), env={}))


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


@pytest.mark.slow  # over a second
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

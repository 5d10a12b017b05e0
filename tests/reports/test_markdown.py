"""The markdown summary: ``--tcav-markdown``, the GitHub job summary, escaping, pytest-xdist."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_tcav.checks.records import CheckRecord
from pytest_tcav.reports.markdown import code, text
from pytest_tcav.reports.markdown import markdown_summary as _markdown_summary
from tests.helpers.plugin_helpers import make_project

CHECKS = """
import pytest
from pytest_tcav import assert_concept_insignificant, assert_concept_significant


def test_horizontal(model):
    assert_concept_significant(model, "horizontal", target="horizontal", layers=["conv", "relu"], require="any")


def test_two_checks(model):
    assert_concept_insignificant(model, "noisy", target=1, layers="relu")
    assert_concept_significant(model, "vertical", target=1, layers="relu", direction="negative")


def test_fails(model):
    assert_concept_significant(model, "noisy", target=1, layers="relu")


def test_error(model):
    assert_concept_significant(model, "horizontal", target=1, layers="no|pe")


@pytest.mark.xfail(reason="noise is not used", strict=True)
def test_xfail(model):
    assert_concept_significant(model, "noisy", target=0, layers="conv")


def test_plain():
    pass
"""

PREVIOUS = "## Build\n\nAn earlier step wrote this.\n"


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    make_project(pytester)
    pytester.makepyfile(test_checks=CHECKS)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.setenv("TINY_TORCH_THREADS", "1")  # the same sums in a serial run and in the workers
    return pytester


@pytest.mark.slow  # runs pytest
def test_serial_and_xdist_runs_write_the_same_table_and_append_it_to_the_job_summary_once(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    summaries = {}
    for name, args in (("serial", ()), ("parallel", ("-n", "2"))):
        summary = project.path / f"{name}-step-summary.md"
        summary.write_text(PREVIOUS)
        monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
        result = project.runpytest_subprocess(*args, "--tcav-cache=off", f"--tcav-markdown=out/{name}.md")
        result.assert_outcomes(passed=3, failed=2, xfailed=1)
        output = result.stdout.str()
        assert f"TCAV markdown summary: {project.path / 'out' / (name + '.md')}" in output
        assert f"TCAV GitHub job summary: {summary}" in output
        summaries[name] = summary.read_text()
    serial = (project.path / "out" / "serial.md").read_text()
    assert (project.path / "out" / "parallel.md").read_text() == serial
    assert not list((project.path / "out").glob(".*.tmp"))  # written through a temporary file, renamed
    # appended after what was there, once (the controller writes it, not the workers), the same table
    assert summaries["serial"] == summaries["parallel"] == PREVIOUS + "\n" + serial

    lines = serial.splitlines()
    assert lines[:3] == ["## TCAV concept checks", "", "6 concept check(s): 3 passed, 1 failed, 1 error(s), 1 xfailed"]
    assert lines[4] == "| test | concept | target | expected | layers: verdict (corrected p) | result |"
    rows = [line for line in lines if line.startswith("| `")]
    assert [row.split(" | ")[0] for row in rows] == [
        "| `test_checks.py::test_error`", "| `test_checks.py::test_fails`", "| `test_checks.py::test_horizontal`",
        "| `test_checks.py::test_two_checks`", "| `test_checks.py::test_two_checks`", "| `test_checks.py::test_xfail`",
    ]
    assert all(row.count(" | ") == 5 and row.endswith(" |") for row in rows)  # the error's "|" is escaped
    error, failed, horizontal = rows[0], rows[1], rows[2]
    assert "`no\\|pe`: not measured" in error and "| **error**: " in error
    assert "| **failed**: Why" in failed
    assert ("| `horizontal` | `horizontal (1)` | significant (any layer) | `conv`: inconclusive (p " in horizontal
            and "<br>`relu`: significant (p " in horizontal and horizontal.endswith("| passed |"))
    assert rows[4].split(" | ")[3] == "significant (negative)" and rows[5].endswith("| xfailed |")


@pytest.mark.slow  # runs pytest
def test_switched_off_in_the_ini_file_the_job_summary_is_left_alone(project: pytest.Pytester,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    summary = project.path / "step-summary.md"
    summary.write_text(PREVIOUS)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    ini = project.path / "pytest.ini"
    ini.write_text(ini.read_text() + "\ntcav_github_summary = false\ntcav_markdown = reports/tcav.md\n")
    result = project.runpytest("-k", "horizontal")
    result.assert_outcomes(passed=1)
    assert summary.read_text() == PREVIOUS and "GitHub job summary" not in result.stdout.str()
    # the ini path is relative to the ini file, like the other reports'
    assert (project.path / "reports" / "tcav.md").read_text().startswith("## TCAV concept checks\n")


@pytest.mark.slow  # runs pytest
def test_nothing_is_written_when_no_concept_check_ran(project: pytest.Pytester,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    summary = project.path / "step-summary.md"
    summary.write_text(PREVIOUS)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = project.runpytest("-k", "plain", "--tcav-markdown=tcav.md")
    result.assert_outcomes(passed=1)
    assert summary.read_text() == PREVIOUS and not (project.path / "tcav.md").exists()
    assert "TCAV" not in result.stdout.str()


@pytest.mark.slow  # runs pytest
def test_an_unwritable_summary_is_said_in_red_not_an_internal_error(project: pytest.Pytester,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(project.mkdir("a-folder")))
    result = project.runpytest("-k", "horizontal")
    result.assert_outcomes(passed=1)
    assert result.ret == 0 and "INTERNALERROR" not in result.stdout.str()
    assert "TCAV GitHub job summary NOT written to" in result.stdout.str()


@pytest.mark.slow  # runs pytest
def test_option_and_ini_key_in_help(pytester: pytest.Pytester) -> None:
    help_text = pytester.runpytest("--help").stdout.str()
    assert "--tcav-markdown=PATH" in help_text and "tcav_markdown (string)" in help_text
    assert "tcav_github_summary (bool)" in help_text


# -- the table from records ------------------------------------------------------------------


def markdown_summary(records: list[dict[str, Any]]) -> str:
    return _markdown_summary(CheckRecord.from_dict(r) for r in records)


def record(**overrides: Any) -> dict[str, Any]:
    values = {"nodeid": "t.py::test_x", "seq": 0, "concept": "striped", "target": "zebra (0)", "layers": ["a"],
              "expectation": "significant", "direction": "positive", "require": "all", "outcome": "passed",
              "message": None,
              "results": [{"layer": "a", "score": 1.0, "p_value": 1e-6, "p_corrected": 2e-6, "significant": True,
                           "cav_accuracy": 0.9}]}
    values.update(overrides)
    return values


def test_user_text_cannot_break_the_table_or_become_markup() -> None:
    nasty = "a|b\nc\r\nd <script>*x*_y_ `z` [l](u) & \\"
    table = markdown_summary([record(nodeid=f"t.py::test[{nasty}]", concept=nasty, target=nasty, outcome="failed",
                                     message=nasty, results=[{**record()["results"][0], "layer": nasty}])])
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert len(rows) == 1 and "| **failed**: a\\|b c d \\<script\\>" in rows[0]  # inside code spans, "<" is text
    assert rows[0].replace("\\|", "").count("|") == 7  # six cells: every "|" of user text is escaped
    assert text(nasty) == "a\\|b c d \\<script\\>\\*x\\*\\_y\\_ \\`z\\` \\[l\\](u) \\& \\\\"
    assert code("a|b\nc") == "`a\\|b c`"
    assert code("x `y` z") == "``x `y` z``" and code("`y`") == "`` `y` ``"


def test_rows_sorted_as_the_terminal_summary_and_a_stability_check_says_what_moved() -> None:
    stable = record(nodeid="a.py::test_stable", expectation="stable",
                    stability={"action": "checked", "moved": ["a"], "layers": [{"layer": "a", "moved": True}]},
                    outcome="failed", message="the concept moved")
    table = markdown_summary([record(), stable])
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert rows[0].startswith("| `a.py::test_stable`") and rows[1].startswith("| `t.py::test_x`")
    assert "`a`: significant (p 2.0e-06), moved | **failed**: the concept moved |" in rows[0]
    assert markdown_summary([]) == ""


def test_a_check_that_could_not_run_names_its_layers() -> None:
    table = markdown_summary([record(outcome="error", results=[], layers=["x", "y"], message="no layer 'x'")])
    assert "| `x`; `y`: not measured | **error**: no layer 'x' |" in table

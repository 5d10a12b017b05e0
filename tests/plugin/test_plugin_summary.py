"""The terminal summary: one row per concept check, only when checks ran, the same under pytest -n 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.plugin_helpers import RECORD_DUMPING_CHECKS, make_project, summary_section

pytestmark = pytest.mark.slow  # every test here runs pytest

CHECKS = RECORD_DUMPING_CHECKS + """

def test_horizontal(model):
    assert_concept_significant(model, "horizontal", target=1, layers=["conv", "relu"], require="any")


def test_vertical(model):
    assert_concept_significant(model, "vertical", target="horizontal", layers="relu", direction="negative")


def test_noise(model):
    assert_concept_insignificant(model, "noisy", target=1, layers=["conv", "relu"])


def test_two_checks(model):
    assert_concept_significant(model, "horizontal", target=1, layers="relu")
    assert_concept_insignificant(model, "vertical", target=1, layers="relu", direction="positive")


def test_fails(model):
    assert_concept_significant(model, "noisy", target=1, layers="relu")


def test_error(model):
    assert_concept_significant(model, "horizontal", target=1, layers="nope")


@pytest.mark.parametrize("layer", ["conv", "relu"])
def test_layers(model, layer):
    assert_concept_significant(model, "horizontal", target=0, layers=layer, direction="negative", require="any")


def test_plain():
    pass
"""

EXPECTED_ROWS = [
    # test, concept, target, expected, layers, score(s), p-value(s), effect(s), detectable effect(s), verdict,
    # result; "*": any one word
    "test_checks.py::test_error horizontal 1 significant nope - - - - error ERROR",
    "test_checks.py::test_fails noisy 1 significant relu * * * * not significant FAILED",
    # horizontal stripes at a random phase, as signed edges (conv): the layer cannot tell them from noise
    "test_checks.py::test_horizontal horizontal 1 significant (any layer) conv,relu * 1.00 * * * * * * "
    "significant on 1/2, inconclusive on 1/2 passed",
    "test_checks.py::test_layers[conv] horizontal 0 significant (negative) (any layer) conv * * * * "
    "inconclusive FAILED",
    "test_checks.py::test_layers[relu] horizontal 0 significant (negative) (any layer) relu 0.00 * * * "
    "significant passed",
    "test_checks.py::test_noise noisy 1 insignificant conv,relu * * * * * * * * not significant passed",
    "test_checks.py::test_two_checks horizontal 1 significant relu 1.00 * * * significant passed",
    "test_checks.py::test_two_checks vertical 1 insignificant relu 0.00 * * * not significant passed",
    "test_checks.py::test_vertical vertical horizontal (1) significant (negative) relu 0.00 * * * significant "
    "passed",
]

def rows(section: list[str]) -> list[str]:
    """The summary's rows (up to the count line), with runs of spaces made one."""
    end = next(k for k, line in enumerate(section) if " concept check(s): " in line)
    return [" ".join(line.split()) for line in section[2:end]]


def matches(row: str, pattern: str) -> bool:
    words, expected = row.split(), pattern.split()
    return len(words) == len(expected) and all(e == "*" or w == e for w, e in zip(words, expected))


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    make_project(pytester)
    pytester.makepyfile(test_checks=CHECKS)
    return pytester


def test_summary_has_one_row_per_check(project: pytest.Pytester) -> None:
    result = project.runpytest()
    result.assert_outcomes(passed=6, failed=3)
    section = summary_section(result.stdout.str())
    assert section[0].split() == ["test", "concept", "target", "expected", "layers", "score", "p", "(corr.)",
                                  "effect", "detect.", "verdict", "result"]
    assert set(section[1]) == {"-", " "}
    assert len(rows(section)) == len(EXPECTED_ROWS)
    for row, pattern in zip(rows(section), EXPECTED_ROWS):
        assert matches(row, pattern), (row, pattern)
    assert section[-3:] == ["9 concept check(s): 6 passed, 2 failed, 1 error(s)", "raised before a verdict:",
                            "  test_checks.py::test_error: LayerError: " + section[-1].split(": LayerError: ")[1]]
    assert "'nope'" in section[-1]


def test_no_summary_without_concept_checks(project: pytest.Pytester) -> None:
    result = project.runpytest("-k", "plain")
    result.assert_outcomes(passed=1)
    assert "TCAV concept checks" not in result.stdout.str()


def dumped(folder: Path) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for file in sorted(folder.iterdir()):
        out[file.name] = [{k: v for k, v in r.items() if k != "seq"} for r in json.loads(file.read_text())]
    return out


def test_xdist_gives_the_same_results_and_summary_as_a_serial_run(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    serial_dir, parallel_dir = project.mkdir("serial"), project.mkdir("parallel")
    monkeypatch.setenv("TINY_TORCH_THREADS", "1")
    monkeypatch.setenv("DUMP_DIR", str(serial_dir))
    # Without the disk cache, so that the workers compute everything again (tests/plugin/test_plugin_cache.py
    # runs both with fresh caches and counts what each process computes).
    serial = project.runpytest_subprocess("--tcav-cache=off")
    monkeypatch.setenv("DUMP_DIR", str(parallel_dir))
    parallel = project.runpytest_subprocess("-n", "2", "--tcav-cache=off")
    parallel.assert_outcomes(passed=6, failed=3)
    assert "2 workers" in parallel.stdout.str()
    serial_section = summary_section(serial.stdout.str())
    assert len(serial_section) == 2 + len(EXPECTED_ROWS) + 1 + 2  # and the error's two lines
    assert summary_section(parallel.stdout.str()) == serial_section
    # Not only the rounded table: every score and p-value is identical, bit for bit.
    serial_records, parallel_records = dumped(serial_dir), dumped(parallel_dir)
    assert len(serial_records) == 9
    assert parallel_records == serial_records
    # ... the per-example evidence too (input shares and cosines, suspects, the CAV direction, the ids)
    measured = [r for records in serial_records.values() for r in records if r.get("results")]
    assert measured and all(r["examples"]["inputs"] for r in measured)
    assert all(layer["input_shares"] and layer["input_cosines"] and layer["cav_direction"]
               for r in measured for layer in r["results"])


def test_a_failed_check_in_an_expected_failure_reads_xfailed(pytester: pytest.Pytester) -> None:
    make_project(pytester)
    pytester.makepyfile(test_x="""
        import pytest
        from pytest_tcav import assert_concept_significant

        @pytest.mark.xfail(reason="the model does not use noise", strict=True)
        def test_noise(model):
            assert_concept_significant(model, "noisy", target=1, layers="relu")
    """)
    result = pytester.runpytest()
    result.assert_outcomes(xfailed=1)
    section = summary_section(result.stdout.str())
    assert section[2].split()[-1] == "xfailed"
    assert section[-1] == "1 concept check(s): 0 passed, 1 xfailed"


# -- a summary that fits the terminal ---------------------------------------------------------


@pytest.mark.parametrize("width", [80, 120])
def test_the_summary_fits_the_terminal_and_v_shows_it_whole(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, width: int
) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    result = project.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=6, failed=3)
    section = summary_section(result.stdout.str())
    assert len(section) > 2 + len(EXPECTED_ROWS)
    assert all(len(line) <= width for line in section), "\n".join(line for line in section if len(line) > width)
    header = section[0].split()
    assert header[0] == "test" and header[1] == "concept" and header[-2:] == ["verdict", "result"]
    assert "detect." not in header and "effect" not in header  # the first columns to go
    assert any(line.startswith(f"(left out to fit {width} columns: detect., effect") for line in section)
    assert "9 concept check(s): 6 passed, 2 failed, 1 error(s)" in section
    rows = section[2:2 + len(EXPECTED_ROWS)]
    # the function names stay (these are short), the verdict and result are those of the whole table
    assert [row.split()[0] for row in rows][:2] == ["test_error", "test_fails"] or \
        [row.split()[0] for row in rows][:2] == ["test_checks.py::test_error", "test_checks.py::test_fails"]
    assert [row.split()[-1] for row in rows].count("FAILED") == 2
    whole = summary_section(project.runpytest("-p", "no:randomly", "-v").stdout.str())
    assert whole[0].split()[-3:] == ["detect.", "verdict", "result"]  # -v: every column, however wide
    assert not any(line.startswith("(left out") for line in whole)


# -- checks whose failure the test caught ------------------------------------------------------

CAUGHT = """
import pytest
from pytest_tcav import ConceptTestFailure, LayerError, assert_concept_significant


def test_expects_the_check_to_fail(model):
    with pytest.raises(ConceptTestFailure):
        assert_concept_significant(model, "noisy", target=1, layers="relu")


def test_expects_the_check_to_raise(model):
    with pytest.raises(LayerError):
        assert_concept_significant(model, "horizontal", target=1, layers="nope")


def test_fails(model):
    assert_concept_significant(model, "noisy", target=1, layers="relu")
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_a_check_its_test_caught_is_counted_apart_everywhere(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, workers: list[str]
) -> None:
    make_project(pytester)
    pytester.makepyfile(test_caught=CAUGHT)
    args = [*workers, "--tcav-json=out.json", "--tcav-markdown=out.md", "--junitxml=out.xml"]
    result = pytester.runpytest_subprocess(*args) if workers else pytester.runpytest(*args)
    result.assert_outcomes(passed=2, failed=1)
    section = summary_section(result.stdout.str())
    assert [" ".join(row.split()[-3:]) for row in section[2:5]] == ["not significant caught", "- error caught",
                                                                    "not significant FAILED"]
    assert "3 concept check(s): 0 passed, 1 failed, 2 caught by their tests" in section
    assert not any("raised before a verdict" in line for line in section)  # the test expected that error

    report = json.loads((pytester.path / "out.json").read_text())
    assert report["summary"] == {"checks": 3, "caught": 2, "failed": 1}
    checks = {check["test"].split("::")[-1]: check for check in report["checks"]}
    assert checks["test_expects_the_check_to_fail"]["outcome"] == "failed"  # what the check found stays
    assert checks["test_expects_the_check_to_fail"]["status"] == "caught"
    assert checks["test_expects_the_check_to_fail"]["caught"] is True
    assert checks["test_expects_the_check_to_raise"]["outcome"] == "error"
    assert checks["test_expects_the_check_to_raise"]["status"] == "caught"
    assert checks["test_fails"]["status"] == "failed" and "caught" not in checks["test_fails"]

    markdown = (pytester.path / "out.md").read_text()
    assert "3 concept check(s): 0 passed, 1 failed, 2 caught by their tests" in markdown
    assert markdown.count("| caught by the test") == 2 and markdown.count("| **failed**") == 1

    xml = (pytester.path / "out.xml").read_text()
    assert xml.count('name="tcav[0].caught" value="true"') == 2

"""A concept check that raises before its verdict is in every report, as an error; its traceback is the user's.

The case of issue 11: four concept tests failed (two crashed inside the model), and the summary said
"2 concept check(s): 1 passed, 1 error(s)" — the crashes were in no summary and no report.
"""

from __future__ import annotations

import html
import json
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.helpers.plugin_helpers import make_project, summary_section

pytestmark = pytest.mark.slow  # every test here runs pytest

CHECKS = """
import torch
from pytest_tcav import assert_concept_significant, assert_concept_stable
import tiny_model


class Crashy(tiny_model.EdgeNet):
    def forward(self, x):
        h = self.conv(x)
        raise TypeError(f"cannot take {tuple(h.shape)}\\nsecond line")


class Matmul(tiny_model.EdgeNet):
    def forward(self, x):
        return torch.mm(x, x)


def test_ok(model):
    assert_concept_significant(model, "horizontal", target=1, layers="relu")


def test_type_error():
    assert_concept_significant(Crashy(), "horizontal", target=1, layers="conv")


def test_runtime_error():
    assert_concept_significant(Matmul(), "horizontal", target=1, layers="conv")


def test_tcav_error(model):
    assert_concept_significant(model, "nope", target=1, layers="relu")


def test_stable_crash():
    assert_concept_stable(Matmul(), "horizontal", target=1, layers="conv", baseline="edges")
"""

LOADER = """
def broken():
    raise RuntimeError("no weights at weights.pt")
"""

YAML = """
model: loader:broken
target: horizontal
layers: relu
concepts:
  horizontal:
    - significant
"""

ERRORS = {  # test id -> the error the summary and the reports name
    "tcav_edges.yaml::horizontal::significant": "RuntimeError: no weights at weights.pt",
    "test_checks.py::test_runtime_error": "RuntimeError: self must be a matrix",
    "test_checks.py::test_stable_crash": "RuntimeError: self must be a matrix",
    "test_checks.py::test_tcav_error": "ConceptDataError: no concept 'nope' in the concept library",
    "test_checks.py::test_type_error": "TypeError: cannot take (16, 4, 12, 12)",
}


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    make_project(pytester)
    pytester.makepyfile(test_checks=CHECKS, loader=LOADER)
    pytester.makefile(".yaml", tcav_edges=textwrap.dedent(YAML))
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.setenv("TINY_TORCH_THREADS", "1")
    return pytester


def run(project: pytest.Pytester, name: str, *args: str) -> pytest.RunResult:
    result = project.runpytest_subprocess(
        "--tcav-cache=off", f"--tcav-json={name}.json", f"--tcav-html={name}.html", f"--tcav-markdown={name}.md",
        f"--junitxml={name}.xml", *args)
    result.assert_outcomes(passed=1, failed=5)
    return result


def test_checks_that_raise_are_errors_in_every_report_serial_and_xdist(project: pytest.Pytester) -> None:
    serial = run(project, "serial")
    parallel = run(project, "parallel", "-n", "2")
    assert "2 workers" in parallel.stdout.str()
    section = summary_section(serial.stdout.str())
    assert summary_section(parallel.stdout.str()) == [line.replace("serial.", "parallel.") for line in section]

    # the terminal summary: every check a row, the count right, each error's type and first line
    assert "6 concept check(s): 1 passed, 5 error(s)" in section
    raised = [line for line in section[section.index("raised before a verdict:") + 1:] if line.startswith("  ")]
    assert [line.split(": ", 1)[0].strip() for line in raised] == sorted(ERRORS)
    for line, (test, error) in zip(raised, sorted(ERRORS.items())):
        assert line.startswith(f"  {test}: {error}")
    assert not any("second line" in line for line in section)  # the first line only

    # JSON: the same checks under serial and -n 2, each error with its type and message
    reports = [json.loads((project.path / f"{name}.json").read_text()) for name in ("serial", "parallel")]
    assert reports[0]["checks"] == reports[1]["checks"]
    assert reports[0]["summary"] == {"checks": 6, "passed": 1, "error": 5}
    erred = {c["test"]: c for c in reports[0]["checks"] if c["outcome"] == "error"}
    assert sorted(erred) == sorted(ERRORS)
    for test, error in ERRORS.items():
        kind, first = error.split(": ", 1)
        assert erred[test]["error"] == kind and erred[test]["message"].startswith(first)
        assert erred[test]["verdict"] == "error" and erred[test]["status"] == "error"
    # the model's failure carries the note naming the set it failed on
    assert "pytest-tcav: raised while running the model" in erred["test_checks.py::test_type_error"]["message"]
    assert erred["test_checks.py::test_stable_crash"]["stability"]["action"] == "error"

    # HTML: a section per error with its type
    page = (project.path / "serial.html").read_text()
    for error in ERRORS.values():
        kind, first = error.split(": ", 1)
        assert f"<strong>{kind}</strong>: {html.escape(first)}" in page

    # markdown: the type and the first line
    markdown = (project.path / "serial.md").read_text()
    assert markdown == (project.path / "parallel.md").read_text()
    assert "6 concept check(s): 1 passed, 5 error(s)" in markdown
    assert r"**error**: TypeError: cannot take (16, 4, 12, 12)" in markdown

    # JUnit XML: the error's type and message as properties
    for name in ("serial", "parallel"):
        cases = {case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
                 for case in ET.parse(project.path / f"{name}.xml").getroot().iter("testcase")}
        assert cases["test_type_error"]["tcav[0].error"] == "TypeError"
        assert cases["test_type_error"]["tcav[0].outcome"] == "error"
        assert cases["test_runtime_error"]["tcav[0].message"].startswith("self must be a matrix")
        assert "tcav[0].error" not in cases["test_ok"]


def test_an_exception_in_the_model_shows_the_test_and_the_model_not_the_engine(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess("--tcav-cache=off", "-k", "type_error or runtime_error")
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    assert "assert_concept_significant(Crashy()" in out and "test_checks.py:28: TypeError" not in out
    assert "test_checks.py:9: TypeError" in out  # the model's line, where it raised
    assert "test_checks.py:14: RuntimeError" in out
    assert "raise TypeError" in out and "return torch.mm(x, x)" in out
    library = str(Path(__import__("pytest_tcav").__file__).parent)
    assert library not in out  # no frame of the engine, the storage or the checks
    assert "_call_impl" not in out  # nor of nn.Module.__call__


def test_a_bug_in_the_library_keeps_its_frames(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception raised in pytest-tcav's own code (not inside the model) is a bug: its frames stay."""
    make_project(pytester)
    pytester.makeconftest("""
import pytest
import tiny_model
import pytest_tcav.engine.layer_verdicts as engine

def broken(*args, **kwargs):
    raise ZeroDivisionError("a bug")

engine.adjust_p_values = broken  # a stand-in for a bug in the engine

@pytest.fixture(scope="session")
def model():
    return tiny_model.EdgeNet()
""")
    pytester.makepyfile(test_bug="""
from pytest_tcav import assert_concept_significant

def test_bug(model):
    assert_concept_significant(model, "horizontal", target=1, layers="relu")
""")
    result = pytester.runpytest_subprocess("--tcav-cache=off")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "ZeroDivisionError: a bug" in out
    assert "pytest_tcav/engine/layer_verdicts.py" in out  # where the library called it
    assert "test_bug.py::test_bug: ZeroDivisionError: a bug" in out


def test_an_error_through_tcav_score_shows_the_users_line_like_an_assertion(pytester: pytest.Pytester) -> None:
    """``tcav.score`` (TCAVSession.score) trims the library's frames as the assertions do."""
    make_project(pytester)
    pytester.makepyfile(test_score="""
import tiny_model


class Crashy(tiny_model.EdgeNet):
    def forward(self, x):
        raise TypeError("inside the model")


def test_unknown_layer(tcav, model):
    tcav.score(model, "horizontal", target=1, layers="nope")


def test_crash_in_the_model(tcav):
    tcav.score(Crashy(), "horizontal", target=1, layers="conv")
""")
    result = pytester.runpytest("--tcav-cache=off", "-p", "no:randomly")
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    library = str(Path(__import__("pytest_tcav").__file__).parent)
    assert library not in out  # no frame of the session, the engine or the storage
    unknown = out[out.index("_ test_unknown_layer _"):out.index("_ test_crash_in_the_model _")]
    lines = [line for line in unknown.splitlines() if line.startswith(">")]
    assert lines == ['>       tcav.score(model, "horizontal", target=1, layers="nope")']  # the user's line on top
    assert "test_score.py:10: LayerError" in unknown and "'nope'" in unknown
    crash = out[out.index("_ test_crash_in_the_model _"):]
    assert "test_score.py:6: TypeError" in crash and 'raise TypeError("inside the model")' in crash  # the model's
    assert "_call_impl" not in crash

"""Concept checks as JUnit XML properties (``--junitxml``): names, values, YAML items, pytest-xdist."""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.helpers.plugin_helpers import make_project

pytestmark = pytest.mark.slow  # every test here runs pytest

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
    assert_concept_significant(model, "horizontal", target=1, layers="nope")


@pytest.mark.xfail(reason="noise is not used", strict=True)
def test_xfail(model):
    assert_concept_significant(model, "noisy", target=0, layers="conv")


def test_plain(record_property):
    record_property("mine", "kept")
"""

YAML = """
model: tiny_model:EdgeNet
target: horizontal
layers: relu
concepts:
  horizontal:
    - significant
"""

Cases = dict[str, list[tuple[str, str]]]


def junit_cases(path: Path) -> Cases:
    """``classname::name`` -> the testcase's properties, in the order written."""
    root = ET.parse(path).getroot()
    return {f"{case.get('classname')}::{case.get('name')}":
            [(p.get("name", ""), p.get("value", "")) for p in case.iter("property")]
            for case in root.iter("testcase")}


def case_name(nodeid: str) -> str:
    """The ``classname::name`` of a test id, as pytest's JUnit XML names it."""
    parts = nodeid.split("::")
    parts[0] = parts[0].removesuffix(".py").replace("/", ".")
    return f"{'.'.join(parts[:-1])}::{parts[-1]}"


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    make_project(pytester)
    pytester.makepyfile(test_checks=CHECKS)
    pytester.makefile(".yaml", tcav_edges=textwrap.dedent(YAML))
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    # One thread in every process: a serial run and the workers compute the same floating-point sums.
    monkeypatch.setenv("TINY_TORCH_THREADS", "1")
    return pytester


def test_properties_in_the_junit_xml_of_serial_and_xdist_runs_are_identical(project: pytest.Pytester) -> None:
    serial = project.runpytest_subprocess("--tcav-cache=off", "--junitxml=serial.xml", "--tcav-json=serial.json")
    serial.assert_outcomes(passed=4, failed=2, xfailed=1)
    parallel = project.runpytest_subprocess("-n", "2", "--tcav-cache=off", "--junitxml=parallel.xml")
    parallel.assert_outcomes(passed=4, failed=2, xfailed=1)
    assert "2 workers" in parallel.stdout.str()
    cases = junit_cases(project.path / "serial.xml")
    assert junit_cases(project.path / "parallel.xml") == cases  # every name and value, in the same order

    names = [name for name, _ in cases["test_checks::test_horizontal"]]
    assert names == [
        "tcav[0].concept", "tcav[0].target", "tcav[0].expectation", "tcav[0].direction", "tcav[0].verdict",
        "tcav[0].outcome",
        *(f"tcav[0].layer[{layer}].{key}" for layer in ("conv", "relu")
          for key in ("verdict", "score", "p_value", "p_corrected", "cav_accuracy")),
    ]
    horizontal = dict(cases["test_checks::test_horizontal"])
    assert horizontal["tcav[0].concept"] == "horizontal" and horizontal["tcav[0].target"] == "horizontal (1)"
    assert horizontal["tcav[0].verdict"] == "significant on 1/2, inconclusive on 1/2"
    assert horizontal["tcav[0].outcome"] == "passed"
    assert horizontal["tcav[0].layer[relu].verdict"] == "significant"

    # the numbers are the JSON report's, with full precision
    report = json.loads((project.path / "serial.json").read_text())
    for check in report["checks"]:
        props = dict(cases[case_name(check["test"])])
        prefix = f"tcav[{check['index']}]"
        assert props[f"{prefix}.concept"] == check["concept"] and props[f"{prefix}.outcome"] == check["outcome"]
        for layer in check["results"]:
            for key in ("score", "p_value", "p_corrected", "cav_accuracy"):
                assert float(props[f"{prefix}.layer[{layer['layer']}].{key}"]) == layer[key]

    two = dict(cases["test_checks::test_two_checks"])  # two checks of one test: tcav[0], tcav[1]
    assert (two["tcav[0].concept"], two["tcav[0].expectation"]) == ("noisy", "insignificant")
    assert (two["tcav[1].concept"], two["tcav[1].direction"]) == ("vertical", "negative")
    failed = dict(cases["test_checks::test_fails"])
    assert failed["tcav[0].outcome"] == "failed" and failed["tcav[0].message"].startswith("Why:")
    error = dict(cases["test_checks::test_error"])
    assert error["tcav[0].verdict"] == "error" and "nope" in error["tcav[0].message"]
    assert not any(".layer[" in name for name in error)  # nothing was measured
    assert dict(cases["test_checks::test_xfail"])["tcav[0].outcome"] == "failed"
    assert cases["test_checks::test_plain"] == [("mine", "kept")]  # a test's own properties, and none of ours
    yaml_case = dict(cases["tcav_edges.yaml.horizontal::significant"])
    assert yaml_case["tcav[0].concept"] == "horizontal" and yaml_case["tcav[0].outcome"] == "passed"
    assert yaml_case["tcav[0].layer[relu].verdict"] == "significant"


def test_a_check_in_a_failing_fixture_teardown_is_still_attached(pytester: pytest.Pytester,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    make_project(pytester)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    pytester.makepyfile(test_teardown="""
import pytest
from pytest_tcav import assert_concept_significant


@pytest.fixture
def checked_after(model):
    yield
    assert_concept_significant(model, "horizontal", target=1, layers="relu")


def test_it(checked_after):
    pass
""")
    result = pytester.runpytest("--junitxml=out.xml")
    result.assert_outcomes(passed=1)
    props = dict(junit_cases(pytester.path / "out.xml")["test_teardown::test_it"])
    assert props["tcav[0].concept"] == "horizontal" and props["tcav[0].layer[relu].verdict"] == "significant"

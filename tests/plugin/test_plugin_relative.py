"""Relative checks (``against=`` / YAML ``against:``) as users meet them: what passes, how failures read.

The hand-wired EdgeNet of ``tiny_model.py``: for class 1 ("horizontal"),
moving towards horizontal stripes rather than vertical ones raises the class
at ``relu`` (by construction), so "horizontal raises class 1 more than
vertical" holds and the reverse does not.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from tests.helpers.plugin_helpers import make_project

pytestmark = pytest.mark.slow  # every test here runs pytest

RELATIVE = """
import pytest

from pytest_tcav import assert_concept_insignificant, assert_concept_significant
from pytest_tcav.errors import ConfigurationError


def test_horizontal_above_vertical(model):
    result = assert_concept_significant(model, "horizontal", target=1, layers="relu", against="vertical")
    assert result.against == ["vertical"] and result.n_random == 5


def test_against_a_union(tcav, model):
    result = tcav.score(model, "horizontal", target=1, layers="relu", against=["vertical", "noisy"],
                        random_sets=4)
    assert result.against == ["vertical", "noisy"] and result.n_random == 4
    assert result.layer("relu").statistic > result.layer("relu").null_mean


def test_vertical_above_horizontal_fails(model):
    assert_concept_significant(model, "vertical", target=1, layers="relu", against="horizontal")


def test_no_difference_fails(model):
    assert_concept_insignificant(model, "horizontal", target=1, layers="relu", against="vertical",
                                 direction="positive")


def test_random_sets_must_be_a_count(model):
    with pytest.raises(ConfigurationError, match="relabelings"):
        assert_concept_significant(model, "horizontal", target=1, layers="relu", against="vertical",
                                   random_sets=["random_0", "random_1", "random_2"])
"""

YAML = """\
model: tiny_model:EdgeNet
target: horizontal
layers: relu
random_sets: [random_0, random_1, random_2, random_3, random_4]
concepts:
  horizontal:
    - significant
    - significant: {against: vertical}
    - significant: {against: [vertical, random_0], require: any}
  vertical:
    - insignificant: {against: horizontal, direction: positive}
    - significant: {against: horizontal}
"""


def test_relative_assertions_pass_and_fail_with_relative_messages(pytester: pytest.Pytester) -> None:
    make_project(pytester)
    pytester.makepyfile(test_relative=RELATIVE)
    result = pytester.runpytest("-p", "no:cacheprovider", "--tcav-json", "report.json", "--tcav-html",
                                "report.html", "--tcav-markdown", "report.md")
    result.assert_outcomes(passed=3, failed=2)
    out = result.stdout.str()
    assert "concept 'vertical' does not raise target 1 more than 'horizontal' on relu" in out
    assert "it raises the target less than 'horizontal'" in out
    assert "concept 'horizontal' raises target 1 more than 'vertical' on relu; expected it not to" in out
    assert "random relabelings of their examples" in out and "relies on" not in out
    assert "against 'vertical' (5 seeded CAVs vs 5 relabelings)" in out  # the table's caption
    assert "horizontal vs vertical" in out  # the summary's concept column
    report = json.loads((pytester.path / "report.json").read_text())
    relative = [c for c in report["checks"] if c.get("against")]
    assert {tuple(c["against"]) for c in relative} == {("vertical",), ("horizontal",)}  # tcav.score records none
    assert "calibration" not in relative[0]
    # every report names a relative check's null by its concepts' relabelings, never "random sets"
    assert "relabeled mean±sd" in out and "random mean±sd" not in out
    measured = [c for c in relative if c["outcome"] != "error"]
    assert len(measured) == 3
    for check in measured:
        assert check["settings"]["null"] == "relabelings"
        assert check["settings"]["null_source"].startswith("5 relabelings of the examples of ")
    page = (pytester.path / "report.html").read_text()
    assert "relabelings' score" in page and "random sets' score" not in page
    assert "null: 5 relabelings of the examples of" in (pytester.path / "report.md").read_text()


def test_yaml_against_runs_relative_checks(pytester: pytest.Pytester) -> None:
    make_project(pytester)
    pytester.makefile(".yaml", tcav_relative=textwrap.dedent(YAML))
    result = pytester.runpytest("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=4, failed=1)
    out = result.stdout.str()
    assert "tcav_relative.yaml::vertical::significant FAILED" in out
    assert "tcav_relative.yaml::horizontal::significant-3 PASSED" in out  # against the union
    assert "concept 'vertical' does not raise target horizontal (1) more than 'horizontal'" in out


def test_yaml_against_is_validated(pytester: pytest.Pytester) -> None:
    make_project(pytester)
    pytester.makefile(".yaml", tcav_bad=textwrap.dedent("""\
        model: tiny_model:EdgeNet
        target: 1
        layers: relu
        concepts:
          horizontal:
            - significant: {against: horizontal}
          vertical:
            - significant: {againts: horizontal}
        """))
    result = pytester.runpytest("-p", "no:cacheprovider")
    out = result.stdout.str()
    assert "tcav_bad.yaml:6" in out and "cannot be tested against itself" in out

"""The tcav marker (automatic, registered, selectable) and loading or disabling the plugin."""

from __future__ import annotations

import pytest

from tests.helpers.plugin_helpers import make_project

pytestmark = pytest.mark.slow  # every test here runs pytest

TESTS = """
import pytest
import pytest_tcav
from pytest_tcav import assert_concept_significant


def test_plain():
    assert True


def test_bare_name(model):
    assert_concept_significant(model, "horizontal", target=1, layers="relu")


def test_attribute(model):
    pytest_tcav.assert_concept_insignificant(model, "noisy", target=1, layers="relu")


def test_nested(model):
    def check():
        assert_concept_significant(model, "horizontal", target=1, layers="relu")
    check()


def test_fixture(tcav):
    assert tcav.config.random_sets == 5


def test_library_fixture(tcav_concepts):
    assert "horizontal" in tcav_concepts.names()


@pytest.fixture
def checked(tcav, model):
    return tcav.score(model, "horizontal", target=1, layers="relu")


def test_through_a_fixture(checked):
    assert checked.all_significant


@pytest.mark.tcav
def test_marked_by_hand():
    assert True


class TestInAClass:
    def test_method(self, model):
        assert_concept_significant(model, "horizontal", target=1, layers="relu")

    def test_plain_method(self):
        assert True
"""

CONCEPT_TESTS = ["test_bare_name", "test_attribute", "test_nested", "test_fixture", "test_library_fixture",
                 "test_through_a_fixture", "test_marked_by_hand", "TestInAClass::test_method"]
PLAIN_TESTS = ["test_plain", "TestInAClass::test_plain_method"]


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    make_project(pytester)
    pytester.makepyfile(test_concepts=TESTS)
    return pytester


def selected(result: pytest.RunResult) -> set[str]:
    return {line.split("::", 1)[1] for line in result.outlines if line.startswith("test_concepts.py::")}


def test_concept_tests_are_marked_automatically(project: pytest.Pytester) -> None:
    result = project.runpytest("--collect-only", "-q", "-m", "tcav")
    assert selected(result) == set(CONCEPT_TESTS)
    result = project.runpytest("--collect-only", "-q", "-m", "not tcav")
    assert selected(result) == set(PLAIN_TESTS)


def test_not_tcav_skips_the_concept_tests(project: pytest.Pytester) -> None:
    result = project.runpytest("-m", "not tcav", "--strict-markers")
    result.assert_outcomes(passed=2, deselected=8)
    assert "TCAV concept checks" not in result.stdout.str()


def test_strict_markers_accept_the_marker(project: pytest.Pytester) -> None:
    result = project.runpytest("--strict-markers", "-W", "error::pytest.PytestUnknownMarkWarning")
    result.assert_outcomes(passed=10)
    assert project.runpytest("--markers").stdout.str().count("@pytest.mark.tcav:") == 1


def test_the_rule_on_items_without_a_function(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_doc='''
        def twice(x):
            """
            >>> twice(2)
            4
            """
            return 2 * x
    ''')
    result = pytester.runpytest("--doctest-modules", "-m", "not tcav")
    result.assert_outcomes(passed=1)


def test_disabled_with_no_tcav(project: pytest.Pytester) -> None:
    result = project.runpytest("-p", "no:tcav", "test_concepts.py::test_fixture",
                               "test_concepts.py::test_plain")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*fixture 'tcav' not found*"])
    assert "--tcav-alpha" not in project.runpytest("-p", "no:tcav", "--help").stdout.str()


def test_assertions_work_without_the_plugin(project: pytest.Pytester) -> None:
    """Imported assertions fall back to a default session: no library, so data is given in full."""
    project.makepyfile(test_bare='''
        import torch
        import tiny_model
        from pytest_tcav import assert_concept_significant

        def test_bare(model):
            gen = torch.Generator().manual_seed(0)
            assert_concept_significant(model, tiny_model.stripes(12, gen), target=1, layers="relu",
                                       inputs=tiny_model.stripes(16, gen), random_pool=tiny_model.noise(60, gen))
    ''')
    result = project.runpytest("-p", "no:tcav", "test_bare.py")
    result.assert_outcomes(passed=1)
    assert "TCAV concept checks" not in result.stdout.str()


def test_loaded_explicitly_by_module_name(project: pytest.Pytester) -> None:
    result = project.runpytest("-p", "pytest_tcav.plugin", "test_concepts.py::test_fixture")
    result.assert_outcomes(passed=1)


def test_loaded_explicitly_without_autoload(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    result = project.runpytest("test_concepts.py::test_fixture")
    result.stdout.fnmatch_lines(["*fixture 'tcav' not found*"])
    result = project.runpytest("-p", "pytest_tcav.plugin", "test_concepts.py::test_fixture")
    result.assert_outcomes(passed=1)
    result = project.runpytest("-p", "tcav", "test_concepts.py::test_fixture")
    result.assert_outcomes(passed=1)


def test_importing_the_plugin_does_not_import_torch(pytester: pytest.Pytester) -> None:
    result = pytester.run(
        __import__("sys").executable, "-c",
        "import sys, pytest_tcav, pytest_tcav.plugin; print('torch' in sys.modules, 'sklearn' in sys.modules)",
    )
    assert result.outlines[-1] == "False False"

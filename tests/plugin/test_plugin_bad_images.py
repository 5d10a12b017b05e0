"""Broken images as a user meets them: real pytest runs (pytester) on a project with the hand-wired EdgeNet.

``tcav_on_bad_image`` picks the bad-image rule; a broken image is a warning
in the run's summary by default and a failing test under ``error``.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.helpers.plugin_helpers import INI, make_project

CHECK = """
from pytest_tcav import assert_concept_significant


def test_horizontal(model):
    assert_concept_significant(model, "horizontal", target=1, layers="relu")


def test_horizontal_again(model):
    assert_concept_significant(model, "horizontal", target=1, layers=["conv", "relu"], require="any")
"""


def _break_an_image(data: Path) -> None:
    folder = data / "concepts" / "horizontal"
    good = (folder / "000.png").read_bytes()
    (folder / "000.png").write_bytes(good[: len(good) // 3])  # truncated by a failed download, say


def test_the_policy_constants_match() -> None:
    from pytest_tcav.config import BAD_IMAGE_POLICIES as CONFIGURED
    from pytest_tcav.engine.examples import BAD_IMAGE_POLICIES

    assert CONFIGURED == BAD_IMAGE_POLICIES


@pytest.mark.slow  # runs pytest
def test_a_broken_image_is_skipped_with_one_warning_by_default(pytester: pytest.Pytester) -> None:
    _break_an_image(make_project(pytester))
    pytester.makepyfile(test_checks=CHECK)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    output = result.stdout.str()
    assert output.count("TCAVDataWarning: skipped 1 unreadable file(s) in concept folder") == 1, output
    assert "000.png (OSError)" in output


@pytest.mark.slow  # runs pytest
def test_on_bad_image_error_fails_the_tests_that_use_the_folder(pytester: pytest.Pytester) -> None:
    _break_an_image(make_project(pytester, ini=INI + "tcav_on_bad_image = error\n"))
    pytester.makepyfile(test_checks=CHECK + textwrap.dedent("""

        def test_vertical(model):
            assert_concept_significant(model, "vertical", target=1, layers="relu", direction="negative")
    """))
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines([
        "E       pytest_tcav.errors.ConceptDataError: cannot read image '*horizontal?000.png' (OSError: *); remove "
        "or replace the file, or set tcav_on_bad_image = warn (on_bad_file='warn') to skip unreadable files",
    ])


@pytest.mark.slow  # runs pytest
def test_warnings_as_errors_is_the_other_way_to_be_strict(pytester: pytest.Pytester) -> None:
    _break_an_image(make_project(pytester))
    pytester.makepyfile(test_checks=CHECK)
    result = pytester.runpytest("-p", "no:cacheprovider", "-W", "error::pytest_tcav.TCAVDataWarning")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["E *pytest_tcav.errors.TCAVDataWarning: skipped 1 unreadable file(s) *"])


@pytest.mark.slow  # runs pytest
@pytest.mark.parametrize(("where", "args"), [("ini", []), ("command line", ["--tcav-on-bad-image=skip"])])
def test_an_unknown_policy_is_a_usage_error_naming_its_source(pytester: pytest.Pytester, where: str,
                                                                args: list[str]) -> None:
    make_project(pytester, ini=INI + ("tcav_on_bad_image = skip\n" if where == "ini" else ""), data=False)
    pytester.makepyfile(test_x="def test_x(): pass")
    result = pytester.runpytest("-p", "no:cacheprovider", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    origin = "tcav_on_bad_image in pytest.ini" if where == "ini" else "--tcav-on-bad-image"
    result.stderr.fnmatch_lines([f"ERROR: pytest-tcav: {origin} must be one of warn, error, got 'skip'"])

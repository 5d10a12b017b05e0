"""``tcav_require_calibration``: a check without a current calibration fails (fail) or warns (warn); the
summary shows the measured rate beside alpha once a calibration exists."""

from __future__ import annotations

import io

import pytest

from pytest_tcav import cli
from tests.helpers.plugin_helpers import INI, make_project

pytestmark = pytest.mark.slow  # every test here runs pytest

CHECKS = """
from pytest_tcav import assert_concept_significant


def test_horizontal(model):
    assert_concept_significant(model, "horizontal", target=1, layers="relu")
"""


def test_required_calibration_fails_then_is_measured_and_shown(pytester: pytest.Pytester,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    make_project(pytester, ini=INI + "tcav_require_calibration = fail\n", n_random=7)
    pytester.makepyfile(test_checks=CHECKS)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*tcav_require_calibration = fail: no calibration of the random library for "
                                 "target 1, direction positive: run pytest-tcav calibrate*"])

    monkeypatch.chdir(pytester.path)
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["calibrate", "--model", "tiny_model:EdgeNet", "--target", "1", "--layers", "relu",
                     "--pseudo-concepts", "2"], stdout=out, stderr=err)
    assert code == 0, err.getvalue()

    (pytester.path / "pytest.ini").write_text(INI.replace("[pytest]", "[pytest]\ntcav_require_calibration = warn"))
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["random library's measured false-positive rate (pytest-tcav calibrate):",
                                 "  target 1, positive, relu: */2 = *% (95% CI *) at alpha 0.05*"])
    assert "no calibration" not in result.stdout.str()

    # a changed random set makes it stale: warned, not failed
    (pytester.path / "data" / "concepts" / "random_2" / "000.png").write_bytes(
        (pytester.path / "data" / "concepts" / "random_3" / "000.png").read_bytes())
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["*TCAVCalibrationWarning: the calibration for target 1, direction positive is "
                                 "stale (the random sets changed*"])


def test_tcav_calibrate_measures_a_missing_calibration_during_the_run(pytester: pytest.Pytester) -> None:
    make_project(pytester, ini=INI + "tcav_require_calibration = warn\n", n_random=7)
    pytester.makepyfile(test_checks=CHECKS)
    result = pytester.runpytest_subprocess("--tcav-calibrate=3")
    result.assert_outcomes(passed=1)  # measured before it was looked up: nothing missing to warn about
    assert "no calibration" not in result.stdout.str()
    result.stdout.fnmatch_lines(["random library's measured false-positive rate (pytest-tcav calibrate):",
                                 "  target 1, positive, relu: */3 = *% (95% CI *) at alpha 0.05*"])
    stored = list((pytester.path / ".pytest_cache" / "d" / "tcav" / "calibration").glob("*.json"))
    assert len(stored) == 1

    # the next run finds it current and measures nothing again
    before = stored[0].stat().st_mtime_ns
    result = pytester.runpytest_subprocess("--tcav-calibrate=3")
    result.assert_outcomes(passed=1)
    assert stored[0].stat().st_mtime_ns == before

    # a changed random set makes it stale: measured again, no warning
    (pytester.path / "data" / "concepts" / "random_2" / "000.png").write_bytes(
        (pytester.path / "data" / "concepts" / "random_3" / "000.png").read_bytes())
    result = pytester.runpytest_subprocess("--tcav-calibrate=3")
    result.assert_outcomes(passed=1)
    assert "stale" not in result.stdout.str() and stored[0].stat().st_mtime_ns != before


PSEUDO_CHECKS = """
from pytest_tcav import assert_concept_insignificant, assert_concept_significant


def test_horizontal(model):
    assert_concept_significant(model, "horizontal", target=1, layers="relu")


def test_noisy(model):
    assert_concept_insignificant(model, "noisy", target=1, layers="relu")
"""

PSEUDO_YAML = """
model: tiny_model:EdgeNet
target: 1
layers: [relu]
null: pseudo
concepts:
  vertical: {direction: negative}
"""


def test_tcav_null_pseudo_judges_every_check_against_stored_pseudo_concepts(pytester: pytest.Pytester) -> None:
    import json

    make_project(pytester, ini=INI + "tcav_null = pseudo\ntcav_pseudo_concepts = 20\ntcav_require_calibration = fail\n",
                 n_random=12)
    pytester.makepyfile(test_checks=PSEUDO_CHECKS)
    pytester.makefile(".yaml", tcav_edges=PSEUDO_YAML)
    serial = pytester.runpytest_subprocess("--tcav-json=serial.json")
    serial.assert_outcomes(passed=3)  # calibrated by construction: tcav_require_calibration has nothing to refuse
    serial.stdout.fnmatch_lines(["tcav: concepts=*, method=gradient, null=pseudo (K=20)"])  # the run says it
    stored = list((pytester.path / ".pytest_cache" / "d" / "tcav" / "pseudo_null").glob("*.json"))
    assert len(stored) == 1  # one target, one set of settings: measured once for the three checks
    before = stored[0].stat().st_mtime_ns
    parallel = pytester.runpytest_subprocess("-n", "2", "--tcav-json=parallel.json")
    parallel.assert_outcomes(passed=3)
    assert stored[0].stat().st_mtime_ns == before  # read back, not measured again

    def checks(name: str) -> dict[str, object]:
        report = json.loads((pytester.path / name).read_text())
        return {c["test"]: (c["settings"], c["results"]) for c in report["checks"]}

    first, second = checks("serial.json"), checks("parallel.json")
    assert first == second
    for settings, results in first.values():
        assert settings["null"] == "pseudo" and settings["null_source"].startswith("K = 20 pseudo-concepts")  # type: ignore[index]
        assert len(results[0]["null_statistics"]) == 20  # type: ignore[index]

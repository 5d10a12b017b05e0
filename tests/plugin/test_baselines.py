"""Baselines: the workflow users meet (missing, created, checked, moved, updated), xdist, the summary.

The file itself is tested in tests/checks/test_baseline_file.py, the comparison in
tests/checks/test_stability.py.

The pytester projects use the hand-wired EdgeNet of ``tiny_model.py``; the
"retrained" model is the same network with its output weights negated
(``TINY_FLIP=1``), so horizontal stripes go from pushing class 1 up on every
input (TCAV score 1.0 at ``relu``) to pushing it down (0.0).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from pytest_tcav.checks.baseline_file import load_baseline
from pytest_tcav.checks.records import CheckRecord
from pytest_tcav.plugin.baselines import summary_lines
from tests.helpers.plugin_helpers import make_project

STABLE = """
import os

import torch

import tiny_model
from pytest_tcav import assert_concept_stable


def model_under_test(model):
    if os.environ.get("TINY_FLIP"):
        model = tiny_model.EdgeNet()
        with torch.no_grad():
            model.fc.weight.neg_()
    return model


def test_horizontal(model):
    assert_concept_stable(model_under_test(model), "horizontal", target=1, layers=["conv", "relu"],
                          baseline="horizontal-1")


def test_noise_through_the_fixture(tcav, model):
    assert_concept_stable(model_under_test(model), "noisy", target=1, layers="relu", baseline="noisy-1")
"""


def section(output: str, title: str = "TCAV baselines") -> list[str]:
    lines = output.splitlines()
    start = next((k for k, line in enumerate(lines) if title in line and line.startswith("=")), None)
    if start is None:
        return []
    out = []
    for line in lines[start + 1:]:
        if line.startswith("="):
            break
        out.append(line.rstrip())
    return out


def stray_files(project: Path) -> list[str]:
    """Temporary files an interrupted or careless write would leave beside the baselines."""
    folder = project / "tcav_baselines"
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp") or p.name.startswith("."))


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.delenv("TINY_FLIP", raising=False)
    make_project(pytester)
    pytester.makepyfile(test_stable=STABLE)
    return pytester


@pytest.mark.slow  # runs pytest
def test_the_baseline_workflow(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = project.path / "tcav_baselines"
    horizontal = folder / "horizontal-1.yaml"
    obtained = folder / "horizontal-1.obtained.yaml"

    # 1. No baseline: fail, name the flag, write nothing (a CI run never creates one).
    result = project.runpytest()
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    assert "BaselineError: no baseline 'horizontal-1' for this check" in out
    assert "run pytest --tcav-update-baselines to record this model's result" in out
    assert not folder.exists()
    assert section(out)[0] == "baselines: 0 checked, 0 created, 0 updated, 2 missing"

    # 2. The flag creates them, atomically, with the usual file mode.
    result = project.runpytest("--tcav-update-baselines")
    result.assert_outcomes(passed=2)
    lines = section(result.stdout.str())
    assert lines[0] == "baselines: 0 checked, 2 created, 0 updated"
    assert "  created: tcav_baselines/horizontal-1.yaml" in lines
    assert sorted(p.name for p in folder.iterdir()) == ["horizontal-1.yaml", "noisy-1.yaml"]
    assert stray_files(project.path) == []
    mask = os.umask(0)
    os.umask(mask)
    assert horizontal.stat().st_mode & 0o777 == 0o666 & ~mask
    data = yaml.safe_load(horizontal.read_text())
    assert data["format"] == 1 and data["test"] == "test_stable.py::test_horizontal"
    assert data["concept"] == "horizontal" and data["target"] == "1"
    assert data["settings"]["random_sets"] == 5 and data["settings"]["method"] == "gradient"
    assert list(data["layers"]) == ["conv", "relu"]
    assert data["layers"]["relu"]["score"] == 1.0 and data["layers"]["relu"]["significant"] is True
    assert len(data["layers"]["relu"]["concept_statistics"]) == 5
    created = horizontal.read_text()

    # 3. Unchanged model: passes; the update flag then finds nothing to write.
    result = project.runpytest()
    result.assert_outcomes(passed=2)
    assert section(result.stdout.str())[0] == "baselines: 2 checked, 0 created, 0 updated"
    result = project.runpytest("--tcav-update-baselines")
    result.assert_outcomes(passed=2)
    assert section(result.stdout.str())[0] == "baselines: 2 checked, 0 created, 0 updated"
    assert horizontal.read_text() == created

    # 4. The retrained model: the concept moved; before/after table, a sentence, an .obtained file.
    monkeypatch.setenv("TINY_FLIP", "1")
    result = project.runpytest()
    result.assert_outcomes(failed=1, passed=1)  # noise stays noise
    out = result.stdout.str()
    errors = [line[1:].strip() for line in out.splitlines() if line.startswith("E ") and line[1:].strip()]
    # (conv moves too, more weakly: the flip negates every gradient, so its statistic changes sign)
    assert errors[0].startswith("pytest_tcav.ConceptStabilityFailure: concept 'horizontal' moved for target 1 on ")
    assert errors[0].endswith("relu since baseline 'horizontal-1' (tolerance: TCAV score ±0.1, statistic: Welch "
                              "p < 0.05 holm-corrected)")
    assert errors[1].startswith("baseline 'horizontal-1' (tcav_baselines/horizontal-1.yaml, pytest-tcav ")
    assert "model changed (" in errors[1]
    header = next(k for k, line in enumerate(errors) if line.startswith("layer"))
    assert errors[header].split() == ["layer", "score", "before", "→", "after", "change", "statistic", "before",
                                      "→", "after", "Welch", "p", "p", "corr", "verdict", "before", "→", "after"]
    assert errors[header + 2].split()[0] == "conv"
    relu = errors[header + 3].split()
    assert relu[:5] == ["relu", "1.00", "→", "0.00", "-1.00"] and relu[-1] == "MOVED"
    sentence = errors[-1]
    assert sentence.startswith("Why: On ")
    assert "on relu the TCAV score moved by -1.00 (tolerance 0.1) and the statistic shifted from " in sentence
    assert ("If the change is intended (a retrained model that should rely on the concept differently), accept "
            "it: run pytest --tcav-update-baselines and commit tcav_baselines/horizontal-1.yaml; the values "
            "measured now are in tcav_baselines/horizontal-1.obtained.yaml.") in sentence
    assert re.search(r"test_stable.py:\d+: ConceptStabilityFailure", out)
    assert "pytest_tcav/" not in out.split("FAILURES")[1]  # no frame from inside the plugin
    assert horizontal.read_text() == created  # the baseline is untouched
    assert yaml.safe_load(obtained.read_text())["layers"]["relu"]["score"] == 0.0
    lines = section(out)
    assert lines[0] == "baselines: 2 checked (1 moved), 0 created, 0 updated"
    assert re.fullmatch(r"  moved: tcav_baselines/horizontal-1.yaml on (conv, )?relu \(this run's values: "
                        r"tcav_baselines/horizontal-1.obtained.yaml\)", lines[1])
    (check,) = [line for line in section(out, "TCAV concept checks") if "test_horizontal" in line]
    assert check.split()[-4] == "moved" and check.split()[-1] == "FAILED"
    (noise,) = [line for line in section(out, "TCAV concept checks") if "test_noise" in line]
    assert noise.split()[-2:] == ["unchanged", "passed"]

    # 5. Accepting the change: --tcav-update-baselines replaces it and removes the .obtained file; the
    #    other baseline of the retrained model is rewritten too (its numbers changed within the tolerance).
    result = project.runpytest("--tcav-update-baselines")
    result.assert_outcomes(passed=2)
    assert section(result.stdout.str())[0] == "baselines: 0 checked, 0 created, 2 updated"
    assert not obtained.exists()
    assert yaml.safe_load(horizontal.read_text())["layers"]["relu"]["score"] == 0.0
    assert stray_files(project.path) == []

    # 6. A passing check removes a stale .obtained file too.
    monkeypatch.delenv("TINY_FLIP")
    project.runpytest("--tcav-update-baselines").assert_outcomes(passed=2)
    obtained.write_text("stale")
    project.runpytest().assert_outcomes(passed=2)
    assert not obtained.exists()


@pytest.mark.slow  # runs pytest
def test_unused_conflicting_and_refused_baselines(project: pytest.Pytester) -> None:
    project.makepyfile(test_stable_more="""
        import pytest
        from pytest_tcav import assert_concept_stable


        @pytest.mark.parametrize("name", ["../escape", "/tmp/abs", "sub/dir", "..", ".hidden", "x.obtained"])
        def test_refused(model, name):
            assert_concept_stable(model, "horizontal", target=1, layers="relu", baseline=name)


        def test_same_name_again(model):
            assert_concept_stable(model, "vertical", target=1, layers="relu", baseline="horizontal-1")
    """)
    project.runpytest("--tcav-update-baselines", "test_stable.py").assert_outcomes(passed=2)
    folder = project.path / "tcav_baselines"
    (folder / "orphan.yaml").write_text((folder / "noisy-1.yaml").read_text())
    (folder / "notes.txt").write_text("not a baseline")

    result = project.runpytest()
    result.assert_outcomes(passed=2, failed=7)
    out = result.stdout.str()
    for name, why in [("../escape", "it is a path"), ("/tmp/abs", "it is a path"), ("sub/dir", "it is a path"),
                      ("..", "it contains '..'"), (".hidden", "use letters, digits"),
                      ("x.obtained", "names ending in '.obtained'")]:
        assert f"BaselineError: baseline name {name!r} is refused: {why}" in out
    assert "BaselineError: baseline 'horizontal-1.yaml' is already used in this run by " \
           "test_stable.py::test_horizontal; give each check its own baseline name" in out  # runs second
    assert sorted(p.name for p in folder.iterdir()) == ["horizontal-1.yaml", "noisy-1.yaml", "notes.txt",
                                                        "orphan.yaml"]
    assert not (project.path.parent / "escape.yaml").exists()
    lines = section(out)
    assert lines[0] == "baselines: 2 checked, 0 created, 0 updated, 7 error(s)"
    assert lines[-1] == "  not used by any test of this run (1): tcav_baselines/orphan.yaml"

    # A partial run would call every baseline of the tests it did not run unused: it lists none.
    result = project.runpytest("-k", "horizontal")
    assert section(result.stdout.str())[-1] == ("  unused baselines are not listed: partial run (-k/-m, "
                                                "8 test(s) deselected)")


XDIST = """
import pytest
from pytest_tcav import assert_concept_stable

CASES = [("horizontal", 1), ("vertical", 1), ("noisy", 1), ("horizontal", 0)]


@pytest.mark.parametrize(("concept", "target"), CASES)
def test_stable(model, concept, target):
    assert_concept_stable(model, concept, target=target, layers="relu", baseline=f"{concept}-{target}")
"""


@pytest.mark.slow  # runs pytest
def test_xdist_workers_write_their_own_baselines_and_the_summary_adds_up(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One subprocess run (each costs three interpreters importing torch): the workers write the
    # baselines of their own tests; created counts and the folders to look for unused files in
    # reach the controller through workeroutput.
    make_project(pytester)
    pytester.makepyfile(test_parallel=XDIST)
    folder = pytester.path / "tcav_baselines"
    folder.mkdir()
    (folder / "orphan.yaml").write_text("left by a deleted test\n")
    monkeypatch.setenv("TINY_TORCH_THREADS", "1")
    result = pytester.runpytest_subprocess("-n", "2", "--tcav-update-baselines")
    result.assert_outcomes(passed=4)
    assert "2 workers" in result.stdout.str()
    lines = section(result.stdout.str())
    assert lines[0] == "baselines: 0 checked, 4 created, 0 updated"
    assert lines[-1] == "  not used by any test of this run (1): tcav_baselines/orphan.yaml"
    assert sorted(p.name for p in folder.iterdir()) == ["horizontal-0.yaml", "horizontal-1.yaml", "noisy-1.yaml",
                                                        "orphan.yaml", "vertical-1.yaml"]
    for concept, target in [("horizontal", 1), ("vertical", 1), ("noisy", 1), ("horizontal", 0)]:
        data = load_baseline(folder / f"{concept}-{target}.yaml")  # whole, valid, and the right test's
        assert (data.concept, data.target) == (concept, str(target))
        assert data.test == f"test_parallel.py::test_stable[{concept}-{target}]"
    assert stray_files(pytester.path) == []
    # The files the workers wrote are the ones a serial run checks against.
    result = pytester.runpytest("-p", "no:xdist")
    result.assert_outcomes(passed=4)
    assert section(result.stdout.str())[0] == "baselines: 4 checked, 0 created, 0 updated"


def test_summary_lines_from_records() -> None:
    def record(nodeid: str, path: str, action: str, outcome: str = "passed", moved: list[str] | None = None):
        return {"nodeid": nodeid, "expectation": "stable", "outcome": outcome,
                "stability": {"path": path, "action": action, "moved": moved or [], "obtained": path + ".o"}}

    records = [record("a", "/p/tcav_baselines/a.yaml", "checked"),
               record("b", "/p/tcav_baselines/b.yaml", "checked", "failed", ["l2"]),
               record("c", "/p/tcav_baselines/c.yaml", "created"),
               record("d", "/p/tcav_baselines/d.yaml", "unchanged"),
               record("e", "/p/tcav_baselines/a.yaml", "checked"),
               {"nodeid": "f", "expectation": "significant", "outcome": "passed"}]
    lines = summary_lines(map(CheckRecord.from_dict, records), root=Path("/p"), partial="partial run (-k/-m)")
    assert lines == [
        "baselines: 4 checked (1 moved), 1 created, 0 updated",
        "  moved: tcav_baselines/b.yaml on l2 (this run's values: tcav_baselines/b.yaml.o)",
        "  created: tcav_baselines/c.yaml",
        "  CONFLICT: tcav_baselines/a.yaml is used by 2 tests (a, e); give each check its own baseline name",
        "  unused baselines are not listed: partial run (-k/-m)",
    ]
    assert summary_lines([], []) == []

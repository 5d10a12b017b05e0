"""Baselines: the workflow users meet (missing, created, checked, moved, updated), the file, the test, xdist.

The pytester projects use the hand-wired EdgeNet of ``tiny_model.py``; the
"retrained" model is the same network with its output weights negated
(``TINY_FLIP=1``), so horizontal stripes go from pushing class 1 up on every
input (TCAV score 1.0 at ``relu``) to pushing it down (0.0).
"""

from __future__ import annotations

import math
import os
import random
import re
from pathlib import Path

import pytest
import yaml
from scipy import stats

from pytest_tcav import atomic_files
from pytest_tcav.checks.baseline_file import Baseline, atomic_write, load_baseline
from pytest_tcav.checks.baseline_names import baseline_path
from pytest_tcav.checks.stability import RESOLUTION, compare, welch_p
from pytest_tcav.engine.results import LayerResult, TCAVResult
from pytest_tcav.errors import BaselineError
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
    tcav.assert_stable(model_under_test(model), "noisy", target=1, layers="relu", baseline="noisy-1")
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


# -- the file, without pytest --------------------------------------------------------------------------


def layer_result(name: str, *, score: float, statistics: list[float], significant: bool = True) -> LayerResult:
    mean = sum(statistics) / len(statistics)
    return LayerResult(
        layer=name, score=score, magnitude=0.1, statistic=mean, null_mean=0.0, null_sd=0.05, t_statistic=3.0,
        p_value=0.001, p_value_rank=0.01, p_corrected=0.002, cav_accuracy=0.9, significant=significant,
        concept_scores=[score] * len(statistics), concept_statistics=statistics,
        cav_accuracies=[0.9] * len(statistics), null_statistics=[0.0] * len(statistics),
        null_scores=[0.5] * len(statistics),
    )


def tcav_result(*layers: LayerResult, model: str = "m" * 64) -> TCAVResult:
    return TCAVResult(concept="striped", target="zebra (0)", direction="either", alpha=0.05, correction="holm",
                      null_test="t", method="gradient", n_random=len(layers[0].concept_statistics),
                      n_concept_examples=30, n_inputs=20, seed=0, layers=list(layers), model_fingerprint=model,
                      concept_fingerprint="c" * 64)


STATS = [0.21, 0.25, 0.19, 0.23, 0.22]


def test_the_file_reads_back_exactly_and_diffs_by_line() -> None:
    result = tcav_result(layer_result("features.conv2", score=0.95, statistics=STATS),
                         layer_result("layer4.0", score=1.0, statistics=[1e-5, 2.5e-7, -3.0e-6, 0.0, 1.0]))
    baseline = Baseline.from_result(result, "striped-zebra", test="tests/test_x.py::test_a[zebra-1]")
    text = baseline.to_yaml()
    assert text.startswith("# pytest-tcav baseline 'striped-zebra'")
    assert "    concept_statistics: [0.21, 0.25, 0.19, 0.23, 0.22]\n" in text
    assert "    concept_statistics: [1.0e-05, 2.5e-07, -3.0e-06, 0.0, 1.0]\n" in text  # floats, not strings
    assert 'test: "tests/test_x.py::test_a[zebra-1]"\n' in text and "target: zebra (0)\n" in text
    again = Baseline.from_yaml(text, name="striped-zebra", origin="x.yaml")
    assert again == baseline
    # One number changed: one line of the file changed.
    moved = tcav_result(layer_result("features.conv2", score=0.95, statistics=STATS),
                        layer_result("layer4.0", score=0.5, statistics=[1e-5, 2.5e-7, -3.0e-6, 0.0, 1.0]))
    other = Baseline.from_result(moved, "striped-zebra", test="tests/test_x.py::test_a[zebra-1]").to_yaml()
    changed = [(a, b) for a, b in zip(text.splitlines(), other.splitlines()) if a != b]
    assert changed == [("    score: 1.0", "    score: 0.5"), ("    concept_scores: [1.0, 1.0, 1.0, 1.0, 1.0]",
                                                           "    concept_scores: [0.5, 0.5, 0.5, 0.5, 0.5]")]


def test_values_are_rounded_for_diffs_but_keep_the_test_meaningful() -> None:
    exact = [0.123456789, 0.2345678912, -0.0345678912, 1.23456789e-9, 0.5]
    baseline = Baseline.from_result(tcav_result(layer_result("l", score=0.123456, statistics=exact)), "b")
    layer = baseline.layers[0]
    assert layer.concept_statistics == (0.123457, 0.234568, -0.0345679, 1.23457e-9, 0.5)
    assert layer.score == 0.1235 and layer.p_value == 0.001
    # The rounding is far below what the comparison calls a change.
    assert welch_p(layer.concept_statistics, exact) == (1.0, False)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]\n", "the file must be a mapping, got list"),
        ("{{{\n", "is not valid YAML"),
        ("!!python/object/apply:os.system ['true']\n", "is not valid YAML"),  # safe_load: no objects
    ],
)
def test_invalid_files_are_refused_with_the_file_named(text: str, message: str) -> None:
    with pytest.raises(BaselineError, match="b.yaml") as info:
        Baseline.from_yaml(text, name="b", origin="b.yaml")
    assert message in str(info.value)


def _valid_text() -> str:
    return Baseline.from_result(tcav_result(layer_result("l", score=0.9, statistics=STATS)), "b").to_yaml()


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("format: 1", "format: 2", "format 2 was written by a newer pytest-tcav"),
        ("    score: 0.9", "    score: high", "'layers.l.score' must be a number, got 'high'"),
        ("    significant: true", "    significant: 1", "'layers.l.significant' must be true or false"),
        ("  random_sets: 5", "  random_sets: 6", "'layers.l.concept_statistics' has 5 values but settings"),
        ("    cav_accuracy: 0.9\n", "", "layers.l lacks 'cav_accuracy'"),
        ("settings:", "setting:", "unknown key(s) 'setting' in the file"),
    ],
)
def test_validation_says_what_is_wrong_and_what_to_do(old: str, new: str, message: str) -> None:
    text = _valid_text()
    assert old in text
    with pytest.raises(BaselineError) as info:
        Baseline.from_yaml(text.replace(old, new), name="b", origin="tcav_baselines/b.yaml")
    assert str(info.value).startswith("baseline tcav_baselines/b.yaml is invalid: ")
    assert message in str(info.value)
    assert str(info.value).endswith("re-record it with pytest --tcav-update-baselines")


@pytest.mark.parametrize("name", ["../x", "..", "a/b", "a\\b", "/etc/passwd", "C:x", ".x", "", "x.obtained",
                                  "-x", "a" * 121, "é"])
def test_names_that_could_leave_the_folder_are_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(BaselineError, match="refused|non-empty"):
        baseline_path(tmp_path, name)


def test_good_names(tmp_path: Path) -> None:
    assert baseline_path(tmp_path, "striped-zebra_v2.1") == tmp_path / "striped-zebra_v2.1.yaml"
    assert baseline_path(tmp_path, "striped.yaml") == tmp_path / "striped.yaml"


def test_atomic_write_leaves_the_old_file_and_no_temporary_file_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "b.yaml"
    atomic_write(path, "old\n")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(atomic_files.os, "replace", broken_replace)  # the writer of every user-owned file
    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, "new\n")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["b.yaml"]


# -- the comparison --------------------------------------------------------------------------------------


def test_welch_matches_scipy_and_treats_noise_as_no_change() -> None:
    a, b = [0.21, 0.25, 0.19, 0.23, 0.22], [0.11, 0.16, 0.12, 0.09, 0.15, 0.13]
    p, differs = welch_p(a, b)
    assert differs and p == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-9)
    assert welch_p(a, a) == (1.0, False)
    assert welch_p(a, [v * (1 + 2e-6) for v in a]) == (1.0, False)  # float noise between machines
    assert welch_p([0.3] * 5, [0.3] * 5) == (1.0, False)  # no spread, no change: defined, not NaN
    p, differs = welch_p([0.3] * 5, [0.1] * 5)
    assert differs and p < 1e-6 and not math.isnan(p)


def _welch_p_by_hand(before: list[float], after: list[float]) -> tuple[float, bool]:
    """welch_p as pytest-tcav computed it before it called scipy's ttest_ind_from_stats: the reference."""
    a, b = [float(v) for v in before], [float(v) for v in after]
    na, nb = len(a), len(b)
    mean_a, mean_b = sum(a) / na, sum(b) / nb
    floor = RESOLUTION * max([abs(v) for v in a + b] + [1e-12])
    diff = mean_b - mean_a
    if abs(diff) <= floor:
        return 1.0, False
    var_a = max(sum((v - mean_a) ** 2 for v in a) / (na - 1), floor**2)
    var_b = max(sum((v - mean_b) ** 2 for v in b) / (nb - 1), floor**2)
    se2 = var_a / na + var_b / nb
    dof = se2**2 / ((var_a / na) ** 2 / (na - 1) + (var_b / nb) ** 2 / (nb - 1))
    return float(min(1.0, 2.0 * stats.t.sf(abs(diff / math.sqrt(se2)), dof))), True


def test_welch_gives_the_p_values_of_the_hand_written_test_it_replaced() -> None:
    rng = random.Random(0)
    for _ in range(3000):
        scale = 10 ** rng.uniform(-8, 3)
        na, nb = rng.randint(2, 12), rng.randint(2, 12)
        shift = rng.choice([0.0, 1e-7, 1e-3, 0.1, 1.0, 10.0]) * scale
        spread = rng.choice([0.0, 1e-9, 1e-4, 0.1, 1.0]) * scale
        a = [rng.gauss(scale, spread) for _ in range(na)]
        b = [rng.gauss(scale + shift, spread * rng.choice([0.5, 1.0, 3.0])) for _ in range(nb)]
        if rng.random() < 0.1:
            b = [v * (1 + rng.uniform(-2e-6, 2e-6)) for v in a]  # rounding noise between machines
        p, differs = welch_p(a, b)
        p_ref, differs_ref = _welch_p_by_hand(a, b)
        assert differs == differs_ref
        assert p == pytest.approx(p_ref, rel=1e-9, abs=1e-300), (a, b)


def test_a_layer_moves_on_the_score_tolerance_or_a_significant_shift_of_the_statistic() -> None:
    before = Baseline.from_result(tcav_result(layer_result("a", score=0.90, statistics=STATS),
                                              layer_result("b", score=0.90, statistics=STATS)), "x")
    shifted = [v - 0.1 for v in STATS]
    after = tcav_result(layer_result("a", score=0.85, statistics=STATS),  # within the score tolerance
                        layer_result("b", score=0.85, statistics=shifted))  # the statistic moved
    rows = compare(before, after, tolerance=0.1)
    assert [(r.layer, r.score_moved, r.statistic_moved) for r in rows] == [("a", False, False), ("b", False, True)]
    assert rows[1].p_corrected == pytest.approx(min(1.0, 2 * rows[1].p_value))  # Holm over the 2 layers
    # A smallest change of the statistic that counts; a score tolerance of 0.04 catches the score.
    rows = compare(before, after, tolerance=0.04, statistic_tolerance=0.2)
    assert [(r.score_moved, r.statistic_moved) for r in rows] == [(True, False), (True, False)]
    # Exactly at the tolerance is not beyond it.
    rows = compare(before, tcav_result(layer_result("a", score=0.8, statistics=STATS),
                                       layer_result("b", score=1.0, statistics=STATS)), tolerance=0.1)
    assert not any(r.moved for r in rows)
    # Where the concept is significant neither before nor after, its score is noise: only the test counts.
    quiet = Baseline.from_result(tcav_result(layer_result("a", score=0.2, statistics=STATS, significant=False)), "q")
    (row,) = compare(quiet, tcav_result(layer_result("a", score=0.8, statistics=STATS, significant=False)),
                     tolerance=0.1)
    assert not row.moved
    (row,) = compare(quiet, tcav_result(layer_result("a", score=0.8, statistics=STATS, significant=True)),
                     tolerance=0.1)
    assert row.score_moved


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
    lines = summary_lines(records, root=Path("/p"), partial="partial run (-k/-m)")
    assert lines == [
        "baselines: 4 checked (1 moved), 1 created, 0 updated",
        "  moved: tcav_baselines/b.yaml on l2 (this run's values: tcav_baselines/b.yaml.o)",
        "  created: tcav_baselines/c.yaml",
        "  CONFLICT: tcav_baselines/a.yaml is used by 2 tests (a, e); give each check its own baseline name",
        "  unused baselines are not listed: partial run (-k/-m)",
    ]
    assert summary_lines([], []) == []

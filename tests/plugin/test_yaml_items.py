"""Declarative concept tests: tcav_*.yaml files as pytest items, their schema errors, their failures.

The schema itself, line by line, is tested in tests/checks/test_yaml_schema.py.

The pytester projects use the hand-wired EdgeNet of ``tiny_model.py`` (see
test_plugin_assertions.py for its ground truth at ``relu``).
"""

from __future__ import annotations

import json
import re
import textwrap

import pytest

from tests.helpers.plugin_helpers import make_project

pytestmark = pytest.mark.slow  # every test here runs pytest

EDGES = """
description: what the hand-wired edge detector must rely on for class 1
model: tiny_model:EdgeNet
target: horizontal
layers: relu
concepts:
  horizontal:
    - significant
    - score: [0.9, 1.0]
    - stable: horizontal-edges
  vertical:
    - direction: negative
    - insignificant: {direction: positive}
  noisy:
    - insignificant: {require: any}
    - score: [0.0, 0.6]
"""

IDS = [
    "tcav_edges.yaml::horizontal::significant",
    "tcav_edges.yaml::horizontal::score",
    "tcav_edges.yaml::horizontal::stable",
    "tcav_edges.yaml::vertical::direction",
    "tcav_edges.yaml::vertical::insignificant",
    "tcav_edges.yaml::noisy::insignificant",
    "tcav_edges.yaml::noisy::score",
]

LOADERS = """
import torch

import tiny_model


def edge(flip=False):
    model = tiny_model.EdgeNet()
    if flip:
        with torch.no_grad():
            model.fc.weight.neg_()
    return model


def not_a_model():
    return "a string"


def broken():
    raise RuntimeError("weights file not found")
"""


def collected(result: pytest.RunResult) -> list[str]:
    return [line for line in result.stdout.lines if "::" in line and not line.startswith(("=", " "))]


def test_every_expectation_is_an_item_with_a_readable_id(pytester: pytest.Pytester) -> None:
    make_project(pytester)
    pytester.makefile(".yaml", tcav_edges=textwrap.dedent(EDGES))
    result = pytester.runpytest("--collect-only", "-q")
    assert collected(result) == IDS
    # The tcav marker: -m selects them, "not tcav" deselects them.
    assert "7 deselected" in pytester.runpytest("--collect-only", "-q", "-m", "not tcav").stdout.str()
    # A single item by id, as pytest prints it.
    result = pytester.runpytest("tcav_edges.yaml::vertical::direction")
    result.assert_outcomes(passed=1)

    result = pytester.runpytest("--tcav-update-baselines")
    result.assert_outcomes(passed=7)
    assert (pytester.path / "tcav_baselines" / "horizontal-edges.yaml").is_file()
    result = pytester.runpytest("-m", "tcav")
    result.assert_outcomes(passed=7)
    out = result.stdout.str()
    assert "baselines: 1 checked, 0 created, 0 updated" in out
    rows = [" ".join(line.split()) for line in out.splitlines() if line.startswith("tcav_edges.yaml::")]
    assert len(rows) == 7  # the summary's rows, sorted by test id
    assert rows[0].startswith("tcav_edges.yaml::horizontal::score horizontal horizontal (1) score relu 1.00 ")
    assert rows[2].startswith("tcav_edges.yaml::horizontal::stable horizontal horizontal (1) stable relu 1.00 ")
    assert rows[2].endswith(" unchanged passed")
    assert rows[5].startswith("tcav_edges.yaml::vertical::direction vertical horizontal (1) significant "
                              "(negative) relu 0.00 ")

FAILING_YAML = """\
model: tiny_model:EdgeNet
target: 1
layers: relu
concepts:
  noisy:
    - significant
  horizontal:
    - insignificant
    - score: [0.2, 0.8]
  vertical:
    - direction: positive
"""

SAME_CHECKS_IN_PYTHON = """
from pytest_tcav import assert_concept_insignificant, assert_concept_significant
from pytest_tcav.checks.significance import check_concept
from pytest_tcav.engine.spec import CheckSpec, settle
from pytest_tcav.session.registry import current_session


def test_noisy(model):
    assert_concept_significant(model, "noisy", target=1, layers="relu")


def test_horizontal(model):
    assert_concept_insignificant(model, "horizontal", target=1, layers="relu")


def test_horizontal_score(model):
    session = current_session()  # no assertion of its own: a YAML score expectation, built as YAML items do
    spec = CheckSpec(concept="horizontal", target=1, layers="relu", expectation="score", score=(0.2, 0.8))
    check_concept(session, model, settle(spec, session.config))


def test_vertical(model):
    assert_concept_significant(model, "vertical", target=1, layers="relu", direction="positive")
"""


def failure_section(output: str, title: str) -> str:
    start = output.index(f"_ {title} _")
    end = output.find("\n___", start + 1)
    summary = output.find("\n===", start + 1)
    return output[start:min(s for s in (end, summary) if s != -1)]


def test_failures_read_like_the_python_assertions(pytester: pytest.Pytester) -> None:
    make_project(pytester)
    pytester.makefile(".yaml", tcav_failing=textwrap.dedent(FAILING_YAML))
    pytester.makepyfile(test_same=SAME_CHECKS_IN_PYTHON)
    result = pytester.runpytest()
    result.assert_outcomes(failed=8)
    out = result.stdout.str()
    pairs = [("noisy::significant", "test_noisy", 6), ("horizontal::insignificant", "test_horizontal", 8),
             ("horizontal::score", "test_horizontal_score", 9), ("vertical::direction", "test_vertical", 11)]
    for item, test, line in pairs:
        yaml_text = failure_section(out, item)
        python_text = failure_section(out, test)
        lines = yaml_text.splitlines()
        assert lines[1] == f"tcav_failing.yaml:{line}: {item.replace('::', ': ')}: expectation failed"
        assert "Traceback" not in yaml_text and "pytest_tcav/" not in yaml_text
        # The same message, word for word: the YAML item shows it bare, pytest prefixes Python's with "E".
        yaml_message = yaml_text.split("ConceptTestFailure: ", 1)[1].strip().splitlines()
        python_message = [line[1:].strip() for line in python_text.splitlines() if line.startswith("E")]
        python_message[0] = python_message[0].split("ConceptTestFailure: ", 1)[1]
        assert [m.strip() for m in yaml_message if m.strip()] == [m for m in python_message if m]
    score = failure_section(out, "horizontal::score")
    assert "concept 'horizontal' has a TCAV score outside [0.2, 0.8] for target 1 on relu" in score
    assert "Why: Its TCAV score on relu is 1.00, outside the expected [0.2, 0.8]" in score
    # The failing item's location in the short summary is the file.
    assert "FAILED tcav_failing.yaml::noisy::significant" in out


def test_a_stable_expectation_fails_on_the_retrained_model_with_the_before_after_table(
    pytester: pytest.Pytester,
) -> None:
    make_project(pytester)
    suite = pytester.mkdir("suite")
    (suite / "loaders.py").write_text(LOADERS)  # beside the YAML file, not on sys.path: found anyway
    spec = suite / "tcav_model.yaml"
    spec.write_text(textwrap.dedent("""\
        model: {callable: "loaders:edge", kwargs: {flip: false}}
        target: horizontal
        layers: [conv, relu]
        concepts:
          horizontal:
            - stable: {baseline: horizontal-model, tolerance: 0.2}
    """))
    pytester.runpytest("--tcav-update-baselines").assert_outcomes(passed=1)
    assert (suite / "tcav_baselines" / "horizontal-model.yaml").is_file()  # next to the YAML file
    spec.write_text(spec.read_text().replace("flip: false", "flip: true"))
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    text = failure_section(result.stdout.str(), "horizontal::stable")
    assert "suite/tcav_model.yaml:6: horizontal: stable: expectation failed" in text
    assert "ConceptStabilityFailure: concept 'horizontal' moved for target horizontal (1) on " in text
    assert re.search(r"relu +1\.00 → 0\.00 +-1\.00 .* MOVED", text)
    assert "run pytest --tcav-update-baselines and commit suite/tcav_baselines/horizontal-model.yaml" in text
    assert (suite / "tcav_baselines" / "horizontal-model.obtained.yaml").is_file()


def test_setup_errors_name_the_file_and_line(pytester: pytest.Pytester) -> None:
    make_project(pytester)
    pytester.makepyfile(loaders=LOADERS)
    pytester.makefile(".yaml", tcav_setup=textwrap.dedent("""
        model: loaders:not_a_model
        target: 1
        layers: relu
        concepts:
          horizontal: [significant]
    """), tcav_unknown=textwrap.dedent("""
        model: loaders:edge
        target: 1
        layers: relu
        concepts:
          horizontl: [significant]
    """), tcav_broken=textwrap.dedent("""
        model: loaders:broken
        target: 1
        layers: relu
        concepts:
          horizontal: [significant]
    """))
    result = pytester.runpytest()
    result.assert_outcomes(failed=3)
    out = result.stdout.str()
    # A bug in the loader: its frame and the error, not pytest's or pluggy's frames.
    broken = failure_section(out, "horizontal::significant").split("\n")  # the first: tcav_broken.yaml
    assert any(line.startswith(">       raise RuntimeError(\"weights file not found\")") for line in broken)
    assert "E       RuntimeError: weights file not found" in broken
    assert not any("_pytest" in line or "pluggy" in line for line in broken)
    assert ("ConfigurationError: tcav_setup.yaml:1: model loader 'loaders:not_a_model' returned str, not a "
            "torch.nn.Module") in out
    assert "tcav_setup.yaml:5: horizontal: significant: could not run" in out
    assert "tcav_unknown.yaml:5: horizontl: significant: could not run" in out
    assert "ConceptDataError: no concept 'horizontl' in the concept library" in out


def test_schema_errors_are_collection_errors_at_the_line(pytester: pytest.Pytester) -> None:
    make_project(pytester)
    pytester.makefile(".yaml", tcav_bad=textwrap.dedent("""
        model: tiny_model:EdgeNet
        target: 1
        layer: relu
        concepts:
          horizontal: [significant]
    """))
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert ("tcav_bad.yaml:3: unknown key 'layer' in the test file; did you mean 'layers'? (expected one of: "
            "model, target, layers, concepts,") in out
    assert "(see docs/yaml-tests.md for the format)" in out
    assert "Traceback" not in out and "yaml_items.py" not in out


def test_the_file_pattern_is_configurable_and_baselines_are_never_collected(pytester: pytest.Pytester) -> None:
    make_project(pytester, ini=None)
    pytester.makefile(".ini", pytest=textwrap.dedent("""
        [pytest]
        tcav_concepts = data/concepts
        tcav_inputs = data/inputs
        tcav_random_sets = 5
        tcav_yaml_pattern = concepts_*.yaml tcav_*.yml
    """))
    text = "model: tiny_model:EdgeNet\ntarget: 1\nlayers: relu\nconcepts:\n  horizontal: [significant]\n"
    pytester.makefile(".yaml", tcav_default=text, concepts_edges=text)
    pytester.makefile(".yml", tcav_short=text)
    pytester.mkdir("tcav_baselines")
    (pytester.path / "tcav_baselines" / "concepts_x.yaml").write_text("not: a test\n")
    result = pytester.runpytest("--collect-only", "-q")
    assert collected(result) == ["concepts_edges.yaml::horizontal::significant",
                                 "tcav_short.yml::horizontal::significant"]
    pytester.makefile(".ini", pytest="[pytest]\ntcav_yaml_pattern =\n")
    assert collected(pytester.runpytest("--collect-only", "-q")) == []


SPLIT_LOADER = """
import torch
from torch import nn

import tiny_model


class Split(nn.Module):
    \"\"\"The EdgeNet's ReLU, returning its output next to a dict: a layer only a selector can study.\"\"\"

    def forward(self, x):
        return torch.relu(x), {"pre": x}


class SplitEdgeNet(tiny_model.EdgeNet):
    def __init__(self):
        super().__init__()
        self.split = Split()

    def forward(self, x):
        out, _extra = self.split(self.conv(x))
        return self.fc(self.pool(out))


def split():
    return SplitEdgeNet()
"""


def test_a_layer_selector_runs_through_yaml_baselines_and_the_json_report(pytester: pytest.Pytester) -> None:
    make_project(pytester)
    pytester.makepyfile(loaders=SPLIT_LOADER)
    pytester.makefile(".yaml", tcav_split=textwrap.dedent("""\
        model: loaders:split
        target: horizontal
        layers:
          - split[0]
          - split[1]['pre']
        concepts:
          horizontal:
            - significant: {require: any}
            - stable: split-edges
    """))
    pytester.runpytest("--tcav-update-baselines").assert_outcomes(passed=2)
    baseline = (pytester.path / "tcav_baselines" / "split-edges.yaml").read_text()
    assert "split[0]" in baseline and "split[1]['pre']" in baseline
    result = pytester.runpytest("--tcav-json", "report.json")
    result.assert_outcomes(passed=2)
    assert "baselines: 1 checked, 0 created, 0 updated" in result.stdout.str()
    report = json.loads((pytester.path / "report.json").read_text())
    significant = next(c for c in report["checks"] if c["expectation"] == "significant")
    assert [r["layer"] for r in significant["results"]] == ["split[0]", "split[1]['pre']"]
    assert significant["results"][0]["verdict"] == "significant"  # the relu's ground truth, through the selector

"""Declarative concept tests: tcav_*.yaml files as pytest items, their schema errors, their failures.

The pytester projects use the hand-wired EdgeNet of ``tiny_model.py`` (see
test_plugin_assertions.py for its ground truth at ``relu``).
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from pytest_tcav.checks.yaml_schema import parse
from pytest_tcav.errors import YamlSpecError
from tests.helpers.plugin_helpers import make_project

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
from pytest_tcav.session.registry import current_session


def test_noisy(model):
    assert_concept_significant(model, "noisy", target=1, layers="relu")


def test_horizontal(model):
    assert_concept_insignificant(model, "horizontal", target=1, layers="relu")


def test_horizontal_score(model):
    check_concept(current_session(), "score", model, "horizontal", target=1, layers="relu", score=(0.2, 0.8))


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


# -- the schema, line by line ------------------------------------------------------------------------


GOOD = """\
model: m:load
target: 1
layers: relu
concepts:
  striped:
    - significant
"""


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("", 1, "the file is empty; expected a mapping with model, target, layers, concepts"),
        ("- a\n- b\n", 1, "the test file must be a mapping with keys model, target, layers, concepts"),
        ("model: m:load\ntarget: 1\nlayers: relu\n", 1, "the test file lacks 'concepts': concepts: a mapping"),
        (GOOD.replace("layers:", "layer:"), 3, "unknown key 'layer' in the test file; did you mean 'layers'?"),
        (GOOD + "target: 2\n", 7, "'target' is given twice in the test file (first on line 2)"),
        (GOOD.replace("m:load", "load_model"), 1, "model 'load_model' is not of the form 'module:callable'"),
        (GOOD.replace("model: m:load", "model: {callable: m:load, arg: [1]}"), 1,
         "unknown key 'arg' in model; did you mean 'args'?"),
        (GOOD.replace("model: m:load", "model: {args: [1]}"), 1, "model lacks 'callable'"),
        (GOOD.replace("target: 1", "target: -1"), 2, "target must be a class index (0, 1, ...) or a class name"),
        (GOOD.replace("target: 1", "target: true"), 2, "target must be a class index"),
        (GOOD.replace("layers: relu", "layers: []"), 3, "layers must be a layer name or a list of layer names"),
        (GOOD.replace("layers: relu", "layers: [a, a]"), 3, "'a' is listed twice in layers"),
        (GOOD + "alpha: 1.5\n", 7, "alpha must be a number strictly between 0.0 and 1.0, got '1.5'"),
        (GOOD + "random_sets: 0\n", 7, "random_sets (a count, or a list of names) must be an integer of at least 1"),
        (GOOD + "method: saliency\n", 7, "method must be one of gradient, integrated_gradients"),
        (GOOD + "require: most\n", 7, "require must be one of all, any, got 'most'"),
        (GOOD.replace("concepts:\n  striped:\n    - significant\n", "concepts: {}\n"), 4,
         "concepts must be a mapping of concept name to a list of expectations"),
        (GOOD.replace("    - significant", "    - significnt"), 6,
         "unknown expectation 'significnt' for concept 'striped'; did you mean 'significant'?"),
        (GOOD.replace("    - significant", "    - stable"), 6, "'stable' needs a value: stable: <baseline name>"),
        (GOOD.replace("    - significant", "    - score: [0.9]"), 6, "score must be a [low, high] pair within [0, 1], "
         "got a list of 1"),
        (GOOD.replace("    - significant", "    - score: [0.9, 0.1]"), 6, "low <= high, got [0.9, 0.1]"),
        (GOOD.replace("    - significant", "    - score: [0, 2]"), 6, "the high end of score must be a number "
         "between 0.0 and 1.0, got '2'"),
        (GOOD.replace("    - significant", "    - direction: up"), 6, "direction must be one of positive, negative, "
         "either, got 'up'"),
        (GOOD.replace("    - significant", "    - significant: {requires: any}"), 6,
         "unknown key 'requires' in the options of 'significant'; did you mean 'require'?"),
        (GOOD.replace("    - significant", "    - significant:\n      require: any"), 6,
         "an expectation of concept 'striped' has 2 keys (significant, require); an expectation is one kind"),
        (GOOD.replace("    - significant", "    - stable: ../../etc/x"), 6,
         "baseline name '../../etc/x' is refused: it is a path"),
        (GOOD.replace("    - significant", "    - stable: {tolerance: 0.2}"), 6,
         "the options of 'stable' lacks 'baseline'"),
        (GOOD.replace("    - significant", "    - stable: {baseline: b, tolerance: 2}"), 6,
         "tolerance must be a number between 0.0 and 1.0"),
        (GOOD.replace("target: 1", "target: !!python/name:os.system ''"), 2,
         "not valid YAML for a test file: could not determine a constructor"),  # SafeLoader only
        (GOOD.replace("  striped:", "  a::b:"), 5, "concept name 'a::b' cannot be a test id part"),
        (GOOD.replace("    - significant", "    []"), 6, "concept 'striped' has no expectations"),
        ("model: [unclosed\n", 2, "not valid YAML"),
        ("a: 1\n---\nb: 2\n", 2, "not valid YAML: expected a single document in the stream but found another"),
    ],
)
def test_schema_errors(text: str, line: int, message: str) -> None:
    with pytest.raises(YamlSpecError) as info:
        parse(text, Path("tcav_x.yaml"))
    error = info.value
    assert (error.line, str(error).split(": ", 1)[0]) == (line, f"tcav_x.yaml:{line}"), str(error)
    assert message in error.message, error.message


def test_a_full_file_parses_to_its_spec() -> None:
    spec = parse(textwrap.dedent("""
        model:
          callable: models.zoo:load
          args: [resnet, 2]
          kwargs: {pretrained: false}
        target: zebra
        layers: [layer3, layer4]
        inputs: ./images/zebra
        random_sets: [random_0, random_1, random_2]
        alpha: 0.01
        seed: 3
        method: integrated_gradients
        n_steps: 4
        batch_size: 8
        require: any
        concepts:
          striped:
            - significant: {direction: positive, require: all, score: [0.8, 1]}
            - stable: {baseline: striped-zebra, tolerance: 0.05, statistic_tolerance: 0.01, direction: positive}
            - significant
          dotted: {direction: negative}
    """), Path("/x/tcav_zebra.yaml"))
    assert (spec.model, spec.model_args, spec.model_kwargs) == ("models.zoo:load", ("resnet", 2), {"pretrained": False})
    assert (spec.target, spec.layers, spec.require) == ("zebra", ("layer3", "layer4"), "any")
    assert spec.random_sets == ("random_0", "random_1", "random_2") and spec.inputs == "./images/zebra"
    assert spec.knobs == {"alpha": 0.01, "seed": 3, "method": "integrated_gradients", "n_steps": 4, "batch_size": 8}
    striped, dotted = spec.concepts
    assert [(e.kind, e.name, e.line) for e in striped.expectations] == [
        ("significant", "significant", 18), ("stable", "stable", 19), ("significant", "significant-2", 20)]
    assert striped.expectations[0].options == {"direction": "positive", "require": "all", "score": (0.8, 1.0)}
    assert striped.expectations[1].options == {"baseline": "striped-zebra", "tolerance": 0.05,
                                               "statistic_tolerance": 0.01, "direction": "positive"}
    assert [(e.kind, e.options) for e in dotted.expectations] == [("direction", {"direction": "negative"})]

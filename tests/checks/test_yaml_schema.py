"""The schema of tcav_*.yaml files: each error at its line with its message, and a full file's spec.

Hostile and fuzzed files are in test_hostile_yaml.py; the files as pytest items in
tests/plugin/test_yaml_items.py.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pytest_tcav.checks.yaml_schema import parse
from pytest_tcav.engine.spec import EngineKnobs
from pytest_tcav.errors import YamlSpecError

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
    assert spec.alpha == 0.01
    assert spec.knobs == EngineKnobs(seed=3, method="integrated_gradients", n_steps=4, batch_size=8)
    striped, dotted = spec.concepts
    assert [(e.kind, e.name, e.line) for e in striped.expectations] == [
        ("significant", "significant", 18), ("stable", "stable", 19), ("significant", "significant-2", 20)]
    assert striped.expectations[0].options == {"direction": "positive", "require": "all", "score": (0.8, 1.0)}
    assert striped.expectations[1].options == {"baseline": "striped-zebra", "tolerance": 0.05,
                                               "statistic_tolerance": 0.01, "direction": "positive"}
    assert [(e.kind, e.options) for e in dotted.expectations] == [("direction", {"direction": "negative"})]


def test_layer_names_with_selectors_parse_as_written() -> None:
    block = GOOD.replace("layers: relu", "layers:\n  - rnn[0]\n  - rnn[1][0]\n  - enc['last_hidden_state']\n"
                                         "  - enc[\"pooler_output\"]")
    assert parse(block, Path("tcav_x.yaml")).layers == (
        "rnn[0]", "rnn[1][0]", "enc['last_hidden_state']", 'enc["pooler_output"]')
    flow = GOOD.replace("layers: relu", "layers: [\"rnn[0]\", \"attn[0]\"]")  # a flow list quotes them
    assert parse(flow, Path("tcav_x.yaml")).layers == ("rnn[0]", "attn[0]")
    assert parse(GOOD.replace("layers: relu", "layers: rnn[1][0]"), Path("tcav_x.yaml")).layers == ("rnn[1][0]",)

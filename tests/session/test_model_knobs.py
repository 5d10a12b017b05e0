"""How the model is called and read reaches the engine from every door: the session, the assertions, ini, YAML."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_tcav import assert_concept_insignificant
from pytest_tcav.checks.yaml_schema import parse
from pytest_tcav.config import TCAVConfig, build_config
from pytest_tcav.engine.spec import EngineKnobs
from pytest_tcav.errors import ConceptTestFailure, ConfigurationError, YamlSpecError
from pytest_tcav.session.session import TCAVSession
from tests.engine.test_batches import KeywordCaller, TupleOut, TwoInputs, sets
from tests.helpers.checks import current


def test_the_ini_keys_set_the_engines_and_knobs_override_them():
    config = build_config({"tcav_layer_point": ("input", "x"), "tcav_pooling": ("mean", "x")}, root=Path("/p"))
    assert (config.layer_point, config.pooling) == ("input", "mean")
    session = TCAVSession(config)
    engine = session.engine(TwoInputs())
    assert (engine.layer_point, engine.pooling) == ("input", "mean")
    engine = session.engine(TwoInputs(), layer_point="output", pooling="first", forward_kwargs={"scale": 2.0},
                            output="logits")
    assert (engine.layer_point, engine.pooling, engine.forward_kwargs, engine.output) == \
        ("output", "first", {"scale": 2.0}, "logits")
    with pytest.raises(ConfigurationError, match="tcav_pooling"):
        build_config({"tcav_pooling": ("max", "tcav_pooling in pytest.ini")}, root=Path("/p"))
    with pytest.raises(ConfigurationError, match="tcav_layer_point"):
        build_config({"tcav_layer_point": ("middle", "tcav_layer_point in pytest.ini")}, root=Path("/p"))


def test_the_assertions_take_layer_point_pooling_forward_kwargs_and_output():
    concept, randoms, inputs = sets()
    session = TCAVSession(TCAVConfig())
    model = KeywordCaller()
    result = session.score(model, concept[0], target=1, layers=["block"], inputs=inputs[0],
                           random_sets=[r[0] for r in randoms], layer_point="input")
    direct = session.engine(model, layer_point="input").test(concept[0], target=1, inputs=inputs[0], layers=["block"],
                                                             random_sets=[r[0] for r in randoms])
    assert result.layers[0].concept_statistics == direct.layers[0].concept_statistics
    # every knob is accepted by the assertion (a TypeError would be plumbing; a verdict is not)
    try:
        with current(session):
            assert_concept_insignificant(TupleOut(), concept, target=1, layers=["body"], inputs=inputs,
                                         random_sets=randoms, forward_kwargs={"scale": 1.0}, output=1,
                                         pooling="mean", alpha=0.01)
    except ConceptTestFailure:
        pass
    assert session.records[-1].outcome in ("passed", "failed")


def test_yaml_tests_take_the_model_knobs():
    text = """
model: pkg.models:load
target: 1
layers: [bert.encoder.layer.0]
layer_point: input
pooling: mean
forward_kwargs: {return_dict: true, scale: 2}
output: logits
concepts:
  planted: [significant]
"""
    spec = parse(text, Path("tcav_x.yaml"))
    assert spec.knobs == EngineKnobs(layer_point="input", pooling="mean",
                                     forward_kwargs={"return_dict": True, "scale": 2}, output="logits")
    with pytest.raises(YamlSpecError, match="pooling"):
        parse(text.replace("pooling: mean", "pooling: max"), Path("tcav_x.yaml"))
    with pytest.raises(YamlSpecError, match="forward_kwargs must be a mapping"):
        parse(text.replace("forward_kwargs: {return_dict: true, scale: 2}", "forward_kwargs: [1]"),
              Path("tcav_x.yaml"))


def test_the_configurations_choices_are_the_engines():
    from typing import get_args

    from pytest_tcav import config
    from pytest_tcav.engine import pooling
    from pytest_tcav.engine.layers import LayerPoint

    assert config.POOLINGS == pooling.POOLINGS
    assert config.LAYER_POINTS == get_args(LayerPoint)

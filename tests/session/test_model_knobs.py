"""How the model is called and read reaches the engine from every door: the session, the assertions, ini, YAML."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pytest_tcav import TCAV, LayerError, assert_concept_insignificant
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


# -- layer_call: a module run more than once per forward pass ---------------------------------------------------


def _resnet_sets() -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    concept = torch.rand(8, 3, 32, 32, generator=g)
    concept[:, 0, ::4, :] = 1.0
    return concept, [torch.rand(8, 3, 32, 32, generator=g) for _ in range(3)], torch.rand(6, 3, 32, 32, generator=g)


def test_layer_call_studies_one_call_of_resnets_shared_relu():
    """torchvision's BasicBlock calls its one ``relu`` twice: refused by default, each call on request."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=4).eval()
    concept, randoms, inputs = _resnet_sets()
    session = TCAVSession(TCAVConfig())  # one memory store for all three: the calls must not share a cache entry
    with pytest.raises(LayerError, match="layer_call=N"):
        session.score(model, concept, target=1, layers="layer1.0.relu", inputs=inputs, random_sets=randoms)
    first, second = (session.score(model, concept, target=1, layers="layer1.0.relu", inputs=inputs,
                                   random_sets=randoms, layer_call=call).layers[0] for call in (0, 1))
    assert first.concept_statistics != second.concept_statistics
    # the block's output is its second ReLU call: the same numbers as the block itself
    block = session.score(model, concept, target=1, layers="layer1.0", inputs=inputs, random_sets=randoms).layers[0]
    assert second.concept_statistics == block.concept_statistics
    with pytest.raises(LayerError, match="'layer1.0.relu' 2 time"):
        session.score(model, concept, target=1, layers="layer1.0.relu", inputs=inputs, random_sets=randoms,
                      layer_call=2)


def test_layer_call_from_the_ini_file_yaml_and_the_engine():
    config = build_config({"tcav_layer_call": ("1", "tcav_layer_call in pytest.ini")}, root=Path("/p"))
    assert config.layer_call == 1 and TCAVSession(config).engine(TwoInputs()).layer_call == 1
    assert TCAVSession(config).engine(TwoInputs(), layer_call=0).layer_call == 0
    assert build_config({"tcav_layer_call": ("none", "x")}, root=Path("/p")).layer_call is None
    with pytest.raises(ConfigurationError, match="tcav_layer_call in pytest.ini must be at least 0"):
        build_config({"tcav_layer_call": ("-1", "tcav_layer_call in pytest.ini")}, root=Path("/p"))
    with pytest.raises(ConfigurationError, match="layer_call must be a call's index"):
        TCAV(TwoInputs(), layer_call=-1)
    spec = parse("model: pkg.models:load\ntarget: 1\nlayers: [relu]\nlayer_call: 1\nconcepts:\n  c: [significant]\n",
                 Path("tcav_x.yaml"))
    assert spec.knobs == EngineKnobs(layer_call=1)
    with pytest.raises(YamlSpecError, match="layer_call"):
        parse("model: pkg.models:load\ntarget: 1\nlayers: [relu]\nlayer_call: first\nconcepts:\n  c: [significant]\n",
              Path("tcav_x.yaml"))

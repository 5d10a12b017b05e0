"""End to end, in this very pytest run: concept tests on a CNN trained in the session.

``synthetic.texture_model()`` learns class 1 = striped, class 0 = dotted from
generated images, so what it relies on is known.  The checks use the real
plugin of this run (the ``tcav`` fixture and the imported assertions), so
they also appear in this run's "TCAV concept checks" summary.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pytest_tcav import (
    Concept,
    ConceptTestFailure,
    TCAVSession,
    assert_concept_insignificant,
    assert_concept_significant,
)
from pytest_tcav.checks.significance import judge
from tests.helpers import synthetic

pytestmark = pytest.mark.slow  # every test here trains a model

LAYERS = ["conv2", "conv3"]


@pytest.fixture(scope="session")
def texture_model() -> nn.Module:
    """Trained once per session (a few seconds on CPU): class 1 = striped, class 0 = dotted."""
    return synthetic.texture_model()


@pytest.fixture(scope="session")
def textures() -> dict[str, Concept]:
    gen = torch.Generator().manual_seed(123)
    return {
        "striped": Concept("striped", synthetic.stripes(30, gen)),
        "noise": Concept("noise", synthetic.noise(30, gen)),
        "random pool": Concept("random pool", synthetic.noise(300, gen)),
        "striped inputs": Concept("striped inputs", synthetic.stripes(40, gen)),
        "dotted inputs": Concept("dotted inputs", synthetic.dots(40, gen)),
    }


def test_striped_drives_the_striped_class(texture_model: nn.Module, textures: dict[str, Concept]) -> None:
    result = assert_concept_significant(
        texture_model, textures["striped"], target=1, layers=LAYERS, inputs=textures["striped inputs"],
        random_pool=textures["random pool"], score=(0.9, 1.0),
    )
    assert all(layer.cav_accuracy > 0.9 for layer in result.layers)


def test_striped_lowers_the_dotted_class(tcav: TCAVSession, texture_model: nn.Module,
                                         textures: dict[str, Concept]) -> None:
    assert_concept_significant(
        texture_model, textures["striped"], target=0, layers=LAYERS, inputs=textures["dotted inputs"],
        random_pool=textures["random pool"], direction="negative", score=(0.0, 0.1),
    )


def test_noise_like_the_random_sets_shows_no_insignificance(texture_model: nn.Module,
                                                            textures: dict[str, Concept]) -> None:
    """Noise drawn like the random pool is random images: a layer that cannot tell it apart says nothing."""
    with pytest.raises(ConceptTestFailure, match="the layer cannot tell the concept from random examples"):
        assert_concept_insignificant(
            texture_model, textures["noise"], target=1, layers=LAYERS, inputs=textures["striped inputs"],
            random_pool=textures["random pool"],
        )


def test_noise_would_fail_a_significance_check_for_the_right_reason(
    tcav: TCAVSession, texture_model: nn.Module, textures: dict[str, Concept]
) -> None:
    result = tcav.score(texture_model, textures["noise"], target=1, layers=LAYERS,
                        inputs=textures["striped inputs"], random_pool=textures["random pool"])
    judgement = judge(result, "significant", "all", None)
    assert not judgement.passed
    # the right reason: the layer's CAVs cannot tell noise from random images, said as the CAV gate's
    # inconclusive verdict or, where the gate lets a layer through, as a low CAV accuracy
    assert ("cannot tell the concept from random examples" in judgement.reason
            or "not linearly separable from the random sets" in judgement.reason), judgement.reason


def test_the_second_time_costs_nothing(tcav: TCAVSession, texture_model: nn.Module,
                                       textures: dict[str, Concept]) -> None:
    kwargs = dict(target=1, layers=LAYERS, inputs=textures["striped inputs"], random_pool=textures["random pool"])
    first = tcav.score(texture_model, textures["striped"], **kwargs)
    computed = dict(tcav.store.computed)
    assert tcav.score(texture_model, textures["striped"], **kwargs) == first
    assert dict(tcav.store.computed) == computed

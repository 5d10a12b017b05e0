"""Concept tests of the texture classifier: what each animal is recognised by.

The model should tell the animals apart by their texture (zebra: stripes,
leopard: dots, snake: zigzags) and by nothing else, in particular not by
the watermark stamped in the corner of some training images.

Inputs are left out of the calls, so each target's images come from the input
library (``inputs/zebra``, ...; ``tcav_inputs`` in pytest.ini), and random
counterparts from ``concepts/random_0`` ... ``random_9``.
"""

import pytest

from pytest_tcav import assert_concept_insignificant, assert_concept_significant

# The 2nd and 3rd conv blocks: where the textures separate. features.conv1 is
# too early to be specific (there every texture "matters" for every class).
LAYERS = ["features.conv2", "features.conv3"]


@pytest.mark.parametrize(
    "animal, texture",
    [("zebra", "striped"), ("leopard", "dotted"), ("snake", "zigzagged")],
)
def test_texture_makes_the_animal(good_model, animal, texture):
    assert_concept_significant(good_model, texture, target=animal, layers=LAYERS)


def test_watermark_does_not_make_a_zebra(good_model):
    # direction="positive": the question is whether the watermark pushes the
    # prediction *towards* zebra. (Stamping it over stripes does hide a few
    # stripes, which lowers "zebra" a little on features.conv3: a real but
    # harmless effect that the default direction="either" would count.)
    assert_concept_insignificant(
        good_model, "watermark", target="zebra", layers=LAYERS, direction="positive"
    )


def test_stripes_score(tcav, good_model):
    # The tcav fixture scores without asserting, and the result holds
    # everything that was measured, layer by layer.
    result = tcav.score(good_model, "striped", target="zebra", layers=LAYERS)

    assert result.significant_layers == LAYERS
    for layer in result.layers:
        assert layer.score >= 0.9  # nearly every zebra is pushed up by stripes
        assert layer.cav_accuracy >= 0.9  # and "striped" is a clear direction there
    assert result.n_inputs == 20  # the images in inputs/zebra
    assert result.n_random == tcav.config.random_sets  # tcav_random_sets, or --tcav-random-sets

"""The retrained model: the concept tests catch the shortcut it learnt.

``shortcut`` was retrained on data where every zebra carried the watermark,
and it learnt the watermark as its "zebra" cue. Its accuracy on clean zebras
fell to 5%; the concept test below sees the cause directly.
"""

import pytest

from pytest_tcav import ConceptTestFailure, assert_concept_insignificant, assert_concept_stable

LAYERS = ["features.conv2", "features.conv3"]


@pytest.mark.xfail(
    strict=True,
    raises=ConceptTestFailure,
    reason="the retrained model relies on the watermark for zebra (the regression this suite exists to catch)",
)
def test_retrained_model_does_not_use_the_watermark(shortcut_model):
    # The same check as test_watermark_does_not_make_a_zebra, on the retrained model.
    assert_concept_insignificant(
        shortcut_model, "watermark", target="zebra", layers=LAYERS, direction="positive"
    )


def test_retraining_moved_zebra_onto_the_watermark(tcav, good_model, shortcut_model):
    # Compare two versions of a model without asserting on either alone.
    before = tcav.score(good_model, "watermark", target="zebra", layers="features.conv3")
    after = tcav.score(shortcut_model, "watermark", target="zebra", layers="features.conv3")

    assert before.layer("features.conv3").score <= 0.3  # few zebras pushed up by the watermark
    assert after.layer("features.conv3").score >= 0.9  # nearly all of them now
    assert after.significant_layers == ["features.conv3"]
    assert not before.any_significant


def test_zebra_relies_on_stripes_as_recorded(good_model):
    # A regression check for the next retraining: compares every layer with
    # tcav_baselines/striped-zebra.yaml (written by `pytest --tcav-update-baselines`,
    # reviewed and committed). It fails when the TCAV score moves by more than
    # the tolerance, or the statistic shifts significantly (docs/baselines.md).
    assert_concept_stable(good_model, "striped", target="zebra", layers=LAYERS, baseline="striped-zebra")

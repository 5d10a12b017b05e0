"""Relative TCAV (``against=``): the relabelings, the union, and verdicts on models of known ground truth.

``texture_model`` decides class 1 (striped) against class 0 (dotted): moving
towards stripes rather than dots raises class 1, so "striped raises class 1
more than dotted" holds and the reverse does not.  The calibration under the
null (exchangeable pairs) is measured by benchmarks/relative_calibration.py;
here one exchangeable pair is checked not to come out significant.
"""

from __future__ import annotations

import pytest
import torch

from pytest_tcav import TCAV, Concept, TCAVResult
from pytest_tcav.engine.relative import against_list, observed_labeling, permuted_labelings
from pytest_tcav.errors import ConceptDataError, ConfigurationError
from tests.helpers import synthetic
from tests.helpers.synthetic import LAYERS

DEEPEST = LAYERS[-1]


# -- the relabelings and the union ---------------------------------------------------------------


def test_each_relabeling_splits_the_pool_into_the_two_sizes() -> None:
    labelings = permuted_labelings(7, 12, 20, seed=3)
    assert len(labelings) == 20
    for labeling in labelings:
        assert len(labeling.positive) == 7 and len(labeling.negative) == 12
        together = torch.cat([labeling.positive, labeling.negative]).sort().values
        assert torch.equal(together, torch.arange(19))  # every example once, on one side
    assert len({tuple(lab.positive.tolist()) for lab in labelings}) > 15  # they differ
    again = permuted_labelings(7, 12, 20, seed=3)
    assert all(torch.equal(a.positive, b.positive) for a, b in zip(labelings, again))  # seeded
    other = permuted_labelings(7, 12, 20, seed=4)
    assert any(not torch.equal(a.positive, b.positive) for a, b in zip(labelings, other))
    observed = observed_labeling(7, 12)
    assert observed.positive.tolist() == list(range(7)) and observed.negative.tolist() == list(range(7, 19))


def test_against_takes_one_concept_or_a_list_never_an_empty_one() -> None:
    tensor = torch.zeros(5, 3)
    assert against_list(tensor) == [tensor]
    assert against_list("dotted") == ["dotted"]
    assert against_list(["a", "b"]) == ["a", "b"] and against_list(("a",)) == ["a"]
    with pytest.raises(ConfigurationError, match="at least one concept"):
        against_list([])


@pytest.mark.slow  # trains a model
def test_old_result_dicts_without_against_still_load(texture_engine, ground_truth_data) -> None:
    data = ground_truth_data
    result = texture_engine.test(data.striped, target=1, inputs=data.striped_inputs, layers=DEEPEST,
                                 random_sets=data.random_sets[:3])
    old = result.to_dict()
    del old["against"]
    assert TCAVResult.from_dict(old) == result and result.against == []


# -- ground truth ---------------------------------------------------------------------------------


@pytest.mark.slow  # trains a model
def test_striped_raises_the_striped_class_more_than_dotted_and_not_the_reverse(texture_engine, ground_truth_data):
    data = ground_truth_data
    kwargs = dict(target=1, inputs=data.striped_inputs, layers=LAYERS, random_sets=10)
    forward = texture_engine.test(Concept("striped", data.striped), against=Concept("dotted", data.dotted),
                                  **kwargs)
    print(forward.table())
    assert forward.against == ["dotted"]
    assert forward.layer("conv2").significant and forward.layer(DEEPEST).significant
    assert forward.layer(DEEPEST).score == 1.0 and forward.layer(DEEPEST).statistic > 0
    reverse = texture_engine.test(Concept("dotted", data.dotted), against=Concept("striped", data.striped),
                                  **kwargs)
    print(reverse.table())
    assert not reverse.any_significant
    assert reverse.layer(DEEPEST).statistic < 0
    negative = texture_engine.test(data.dotted, against=data.striped, direction="negative", **kwargs)
    assert negative.layer(DEEPEST).significant


@pytest.mark.slow  # trains a model
def test_with_a_list_the_negative_set_is_the_union_in_any_order(texture_model, texture_engine, ground_truth_data):
    data = ground_truth_data
    kwargs = dict(target=1, inputs=data.striped_inputs, layers=DEEPEST, random_sets=5)
    union = texture_engine.test(data.striped, against=[Concept("dotted", data.dotted),
                                                       Concept("patch", data.patch)], **kwargs)
    print(union.table())
    assert union.against == ["dotted", "patch"] and union.all_significant
    swapped = TCAV(texture_model, seed=0).test(data.striped, against=[Concept("patch", data.patch),
                                                                      Concept("dotted", data.dotted)], **kwargs)
    assert swapped.to_dict()["layers"] == union.to_dict()["layers"]  # one union, however listed
    single = texture_engine.test(data.striped, against=data.dotted, **kwargs)
    assert single.layer(DEEPEST).statistic != union.layer(DEEPEST).statistic  # the patch is in the union


@pytest.mark.slow  # trains a model
def test_an_exchangeable_pair_is_not_significant(texture_engine) -> None:
    gen = torch.Generator().manual_seed(99)
    first, second = synthetic.stripes(30, gen), synthetic.stripes(30, gen)
    result = texture_engine.test(first, against=second, target=1, inputs=synthetic.stripes(40, gen),
                                 layers=LAYERS, random_sets=10, direction="either")
    print(result.table())
    assert not result.any_significant


# -- caching, determinism, errors ------------------------------------------------------------------


@pytest.mark.slow  # trains a model
def test_relative_cavs_are_cached_and_bit_for_bit_deterministic(texture_model, ground_truth_data) -> None:
    data = ground_truth_data
    kwargs = dict(target=1, inputs=data.striped_inputs, layers=LAYERS, random_sets=6, against=data.dotted)
    engine = TCAV(texture_model, seed=0)
    first = engine.test(data.striped, **kwargs)
    assert engine.store.computed["cav"] == len(LAYERS) * 2 * 6  # N seeded CAVs and N relabelings per layer
    again = engine.test(data.striped, direction="either", **kwargs)
    assert engine.store.computed["cav"] == len(LAYERS) * 2 * 6  # nothing trained twice
    assert again.layers[0].concept_statistics == first.layers[0].concept_statistics
    fresh = TCAV(texture_model, seed=0).test(data.striped, **kwargs)
    assert fresh.to_dict() == first.to_dict()
    other_seed = TCAV(texture_model, seed=1).test(data.striped, **kwargs)
    assert other_seed.layer(DEEPEST).null_statistics != first.layer(DEEPEST).null_statistics


@pytest.mark.slow  # trains a model
def test_bad_relative_arguments_are_named(texture_engine, ground_truth_data) -> None:
    data = ground_truth_data
    kwargs = dict(target=1, inputs=data.striped_inputs, layers=DEEPEST)
    with pytest.raises(ConfigurationError, match="relabelings of the concepts"):
        texture_engine.test(data.striped, against=data.dotted, random_sets=data.random_sets, **kwargs)
    with pytest.raises(ConfigurationError, match="no random_pool"):
        texture_engine.test(data.striped, against=data.dotted, random_sets=5, random_pool=data.patch, **kwargs)
    mixed = torch.cat([data.dotted[:20], data.striped[:3]])
    with pytest.raises(ConceptDataError, match="share 3 example"):
        texture_engine.test(data.striped, against=mixed, random_sets=5, **kwargs)
    with pytest.raises(ConceptDataError, match="share"):
        texture_engine.test(data.striped, against=[data.dotted, data.dotted], random_sets=5, **kwargs)

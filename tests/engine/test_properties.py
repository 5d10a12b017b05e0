"""Properties of the statistics and of the engine's verdicts, over generated data (hypothesis).

What must hold whatever the data:

* a verdict does not depend on the order of the inputs, on what the sets are
  called, or on the batch size (scores equal within float tolerance,
  verdicts identical);
* ``sign_count`` of two sets is symmetric: C against R plus R against C is 1
  (less the share of products that are exactly 0), also through the engine,
  which stores each CAV once and flips it;
* Holm and Bonferroni are monotone (a larger raw p-value never gets a smaller
  adjusted one), permutation-equivariant, and nested (Bonferroni rejects a
  subset of what Holm rejects, which rejects a subset of the raw test);
* p-values are probabilities and never NaN, for ties, constant nulls and
  values from 1e-300 to 1e100; the t and rank tests agree on the direction.

tests/engine/test_statistics.py holds the hand-computed cases; these are the laws.
Example counts stay small (every engine example runs a model) and the whole
file runs in well under a minute.
"""

from __future__ import annotations

import dataclasses
import math
from functools import cache
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn

from pytest_tcav import TCAV, Concept
from pytest_tcav.engine.statistics import adjust_p_values, compare_to_null, pair_scores

ENGINE = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FAST = settings(max_examples=50, deadline=None)

N_INPUTS = 16
LAYERS = ["1", "3"]


#: How far the concept lies along the target's input gradient: significant on both layers, or on neither.
STRENGTHS = {"strong": 8.0, "weak": 1.0}


@cache
def world(strength: str = "strong") -> tuple[nn.Module, torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """A small MLP, a concept, five random sets and inputs (fixed, seeded)."""
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 3)).eval()
    gradient = torch.autograd.functional.jacobian(lambda x: model(x)[1], torch.zeros(8))
    concept = torch.randn(10, 8, generator=gen) + STRENGTHS[strength] * gradient / gradient.norm()
    randoms = [torch.randn(10, 8, generator=gen) for _ in range(5)]
    inputs = torch.randn(N_INPUTS, 8, generator=gen)
    return model, concept, randoms, inputs


@cache
def reference(strength: str = "strong", method: str = "gradient") -> tuple:
    model, concept, randoms, inputs = world(strength)
    return tuple(TCAV(model, method=method).test(  # type: ignore[arg-type]
        concept, target=1, inputs=inputs, layers=LAYERS, random_sets=randoms).layers)


strengths = st.sampled_from(sorted(STRENGTHS))


def assert_equivalent(got, expected, *, score_slack: float = 0.0) -> None:
    """Same verdicts; scores within float tolerance (``score_slack``: share of inputs allowed to flip)."""
    for a, b in zip(got, expected):
        assert a.layer == b.layer and a.significant == b.significant
        assert a.statistic == pytest.approx(b.statistic, abs=1e-5)
        assert a.null_statistics == pytest.approx(b.null_statistics, abs=1e-5)
        assert a.p_value == pytest.approx(b.p_value, abs=1e-4)
        assert a.p_corrected == pytest.approx(b.p_corrected, abs=1e-4)
        assert a.concept_scores == pytest.approx(b.concept_scores, abs=score_slack + 1e-12)
        assert a.cav_accuracies == b.cav_accuracies


@pytest.mark.parametrize("method", ["gradient", "integrated_gradients"])
def test_the_reference_verdicts_are_far_from_alpha(method: str) -> None:
    """Otherwise 'verdicts identical' below could flip on the last bit and the properties would be flaky."""
    for strength, verdict in (("strong", True), ("weak", False)):
        layers = reference(strength, method)
        assert [layer.significant for layer in layers] == [verdict, verdict]
        assert all(abs(layer.p_corrected - 0.05) > 0.02 for layer in layers)


# -- invariances of the engine ------------------------------------------------------------------


@pytest.mark.slow  # over a second
@ENGINE
@given(order=st.permutations(range(N_INPUTS)), strength=strengths)
def test_permuting_the_inputs_changes_nothing(order: list[int], strength: str) -> None:
    model, concept, randoms, inputs = world(strength)
    got = TCAV(model).test(concept, target=1, inputs=inputs[list(order)], layers=LAYERS, random_sets=randoms)
    assert_equivalent(got.layers, reference(strength))


@pytest.mark.slow  # over a second
@ENGINE
@given(names=st.lists(st.text(max_size=20), min_size=7, max_size=7), strength=strengths)
def test_names_of_the_sets_change_nothing(names: list[str], strength: str) -> None:
    model, concept, randoms, inputs = world(strength)
    got = TCAV(model).test(Concept(names[0], concept), target=1, inputs=Concept(names[1], inputs), layers=LAYERS,
                           random_sets=[Concept(name, r) for name, r in zip(names[2:], randoms)])
    assert got.concept == names[0]
    # bit for bit: seeds and caches follow content, never names (which only label the suspect examples)
    assert _unnamed(got.layers) == _unnamed(reference(strength))


def _unnamed(layers: Any) -> list[Any]:
    """Layer results without the set names that label their suspect examples."""
    return [dataclasses.replace(r, suspects=[{k: v for k, v in s.items() if k not in ("set", "id")}
                                             for s in r.suspects]) for r in layers]


@pytest.mark.slow  # over a second
@ENGINE
@given(batch_size=st.integers(1, 2 * N_INPUTS), method=st.sampled_from(["gradient", "integrated_gradients"]),
       strength=strengths)
def test_the_batch_size_changes_only_the_last_bits(batch_size: int, method: str, strength: str) -> None:
    model, concept, randoms, inputs = world(strength)
    got = TCAV(model, batch_size=batch_size, method=method).test(  # type: ignore[arg-type]
        concept, target=1, inputs=inputs, layers=LAYERS, random_sets=randoms)
    # Batching changes float sums in the last bits; a product within those bits of 0 may flip one input.
    assert_equivalent(got.layers, reference(strength, method), score_slack=1.0 / N_INPUTS)


@pytest.mark.slow  # over a second
@ENGINE
@given(seed=st.integers(0, 2**31 - 1))
def test_sign_count_of_two_sets_is_symmetric_through_the_engine(seed: int) -> None:
    model, _concept, _randoms, _inputs = world()
    gen = torch.Generator().manual_seed(seed)
    a, b, *others = [torch.randn(8, 8, generator=gen) + 0.3 * k for k in range(5)]
    inputs = torch.randn(N_INPUTS, 8, generator=gen)
    engine = TCAV(model)
    forward = engine.test(a, target=1, inputs=inputs, layers=LAYERS, random_sets=[b, *others])
    backward = engine.test(b, target=1, inputs=inputs, layers=LAYERS, random_sets=[a, *others])
    for f, r in zip(forward.layers, backward.layers):
        assert f.concept_scores[0] + r.concept_scores[0] == 1.0  # exact: the flipped CAV is the exact negative
        assert f.concept_statistics[0] == -r.concept_statistics[0]
        assert f.cav_accuracies[0] == r.cav_accuracies[0]


arrays = st.integers(1, 12).flatmap(lambda features: st.tuples(
    st.lists(st.lists(st.floats(-1e3, 1e3, allow_nan=False, width=32), min_size=features, max_size=features),
             min_size=1, max_size=20),
    st.lists(st.lists(st.floats(-1e3, 1e3, allow_nan=False, width=32), min_size=features, max_size=features),
             min_size=1, max_size=4),
))


@FAST
@given(arrays)
def test_sign_count_against_the_opposite_cav_is_the_complement(data) -> None:
    gradients, cavs = (torch.tensor(x, dtype=torch.float32) for x in data)
    forward, backward = pair_scores(gradients, cavs), pair_scores(gradients, -cavs)
    zeros = ((gradients @ cavs.T) == 0).double().mean(0).numpy()
    assert forward.sign_count + backward.sign_count + zeros == pytest.approx(np.ones(len(cavs)), abs=1e-12)
    assert np.array_equal(forward.cosine, -backward.cosine) and np.array_equal(forward.magnitude, -backward.magnitude)
    for scores in (forward, backward):
        assert np.all((scores.sign_count >= 0) & (scores.sign_count <= 1))
        assert np.all(np.abs(scores.cosine) <= 1 + 1e-12) and not np.isnan(scores.cosine).any()


# -- corrections -----------------------------------------------------------------------------------

p_values = st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=10)


@FAST
@given(p=p_values, index=st.integers(0, 9), raise_to=st.floats(0, 1, allow_nan=False))
def test_raising_one_raw_p_value_never_lowers_an_adjusted_one(p: list[float], index: int, raise_to: float) -> None:
    index %= len(p)
    raised = list(p)
    raised[index] = max(p[index], raise_to)
    for method in ("holm", "bonferroni", "none"):
        before, after = adjust_p_values(p, method), adjust_p_values(raised, method)  # type: ignore[arg-type]
        assert all(b <= a + 1e-15 for b, a in zip(before, after)), method


@FAST
@given(p=p_values, data=st.data())
def test_corrections_follow_the_layers_when_they_are_reordered(p: list[float], data: st.DataObject) -> None:
    order = data.draw(st.permutations(range(len(p))))
    for method in ("holm", "bonferroni"):
        adjusted = adjust_p_values(p, method)  # type: ignore[arg-type]
        permuted = adjust_p_values([p[k] for k in order], method)  # type: ignore[arg-type]
        assert permuted == [adjusted[k] for k in order]


@FAST
@given(p=p_values, alpha=st.floats(0.001, 0.5))
def test_rejections_are_nested_bonferroni_holm_raw(p: list[float], alpha: float) -> None:
    holm = adjust_p_values(p, "holm")
    bonferroni = adjust_p_values(p, "bonferroni")
    for raw, h, b in zip(p, holm, bonferroni):
        assert (b < alpha) <= (h < alpha) <= (raw < alpha)
        assert 0.0 <= h <= 1.0 and 0.0 <= b <= 1.0 and not math.isnan(h)


# -- p-values ---------------------------------------------------------------------------------------

magnitudes = st.sampled_from([1e-300, 1e-12, 1e-3, 1.0, 1e6, 1e100])
nulls = st.tuples(st.lists(st.floats(-1, 1, allow_nan=False), min_size=1, max_size=40), magnitudes).map(
    lambda t: np.array(t[0]) * t[1])


@FAST
@given(null=nulls, where=st.floats(-3, 3, allow_nan=False), ties=st.integers(0, 3))
def test_p_values_are_probabilities_for_any_scale_ties_or_constant_null(null: np.ndarray, where: float,
                                                                      ties: int) -> None:
    scale = float(np.max(np.abs(null))) or 1.0
    value = where * scale
    null = np.concatenate([null, np.full(ties, value)])  # values equal to the concept's
    for direction in ("positive", "negative", "either"):
        for test in ("t", "rank"):
            result = compare_to_null(value, null, direction, test)  # type: ignore[arg-type]
            assert 0.0 <= result.p_value <= 1.0 and 1.0 / (len(null) + 1) <= result.p_value_rank <= 1.0
            assert not math.isnan(result.statistic) and not math.isnan(result.p_value)


@FAST
@given(null=st.lists(st.floats(-1, 1, allow_nan=False), min_size=3, max_size=40).filter(lambda v: np.std(v) > 1e-6),
       value=st.floats(-2, 2, allow_nan=False))
def test_the_t_and_rank_tests_agree_on_the_direction(null: list[float], value: float) -> None:
    null_array = np.array(null)
    n = len(null)
    t_up = compare_to_null(value, null_array, "positive", "t")
    t_down = compare_to_null(value, null_array, "negative", "t")
    rank_up = compare_to_null(value, null_array, "positive", "rank")
    rank_down = compare_to_null(value, null_array, "negative", "rank")
    either = compare_to_null(value, null_array, "either", "t")
    mean = float(null_array.mean())
    assume(abs(value - mean) > 1e-9)
    # The statistic's sign is the side of the null's mean the value lies on, for both tests.
    assert math.copysign(1, t_up.statistic) == math.copysign(1, value - mean) == math.copysign(1, rank_up.statistic)
    # One-sided t p-values are complementary; rank ones overlap by the ties (their sum is at least 1).
    assert t_up.p_value + t_down.p_value == pytest.approx(1.0, abs=1e-12)
    assert rank_up.p_value + rank_down.p_value >= 1.0 - 1e-12
    assert either.p_value == pytest.approx(min(1.0, 2 * min(t_up.p_value, t_down.p_value)), abs=1e-12)
    # Beyond every random set, both tests put the value in the upper tail, at the rank test's floor.
    if value > null_array.max():
        assert rank_up.p_value == pytest.approx(1.0 / (n + 1)) and t_up.p_value < 0.5
    if value < null_array.min():
        assert rank_down.p_value == pytest.approx(1.0 / (n + 1)) and t_down.p_value < 0.5
    # Both p-values reported for one direction rank the value the same way: the smaller the upper-tail
    # t p-value, the smaller or equal the rank p-value of a larger value.
    higher = value + abs(value - mean) + 0.1
    assert compare_to_null(higher, null_array, "positive", "t").p_value <= t_up.p_value
    assert compare_to_null(higher, null_array, "positive", "rank").p_value <= rank_up.p_value

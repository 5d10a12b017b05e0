"""The scores and the significance test, on hand-made gradients, CAVs and null distributions.

Every number here is computed a second way (by hand, or with scipy's own
tests), so a change of definition in :mod:`pytest_tcav.engine.statistics` shows up
as a failure, not as a silently different verdict.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from pytest_tcav import Concept, ConfigurationError, InsufficientDataError
from pytest_tcav.engine.statistics import (
    adjust_p_values,
    check_test_feasible,
    compare_to_null,
    leave_one_out_null,
    pair_scores,
    pair_scores_each,
    required_random_sets,
)

# -- scores ----------------------------------------------------------------------------------


def test_pair_scores_by_hand():
    gradients = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 4.0], [0.0, 0.0]])  # last: zero gradient
    cavs = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    scores = pair_scores(gradients, cavs)
    # products T = g @ w: cav 0 -> [2, 0, -6, 0]; cav 1 -> [1, 2, 1, 0]
    assert scores.sign_count.tolist() == [1 / 4, 3 / 4]  # T > 0 strictly: zeros do not count
    assert scores.magnitude.tolist() == pytest.approx([(2 + 0 - 6 + 0) / 4, (1 + 2 + 1 + 0) / 4])
    s2 = 1 / math.sqrt(2)
    cos0 = [1.0, 0.0, -3 / 5, 0.0]  # a zero gradient has cosine 0, not NaN
    cos1 = [s2, s2, 1 / (5 * math.sqrt(2)), 0.0]
    assert scores.cosine.tolist() == pytest.approx([np.mean(cos0), np.mean(cos1)])


def test_cosine_ignores_scale_but_magnitude_does_not():
    gen = torch.Generator().manual_seed(0)
    gradients = torch.randn(7, 5, generator=gen)
    cav = torch.randn(1, 5, generator=gen)
    base = pair_scores(gradients, cav)
    scaled = pair_scores(gradients * 1000.0, cav * 0.01)
    assert scaled.cosine == pytest.approx(base.cosine)
    assert scaled.sign_count.tolist() == base.sign_count.tolist()
    assert scaled.magnitude == pytest.approx(base.magnitude * 10.0)


def test_zero_cav_and_zero_gradients_score_zero_not_nan():
    scores = pair_scores(torch.zeros(3, 4), torch.zeros(2, 4))
    for values in (scores.sign_count, scores.magnitude, scores.cosine):
        assert np.all(values == 0.0)


def test_opposite_cavs_have_complementary_sign_counts():
    gen = torch.Generator().manual_seed(1)
    gradients = torch.randn(11, 6, generator=gen)
    cav = torch.randn(1, 6, generator=gen)
    forward, backward = pair_scores(gradients, cav), pair_scores(gradients, -cav)
    assert forward.sign_count[0] + backward.sign_count[0] == pytest.approx(1.0)  # no exact zeros here
    assert forward.cosine[0] == pytest.approx(-backward.cosine[0])


def test_pair_scores_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="do not match"):
        pair_scores(torch.zeros(3, 4), torch.zeros(2, 5))


def test_pair_scores_each_agrees_with_the_batched_scores():
    gen = torch.Generator().manual_seed(2)
    gradients = torch.randn(9, 300, generator=gen)
    cavs = torch.randn(7, 300, generator=gen)
    batched, each = pair_scores(gradients, cavs), pair_scores_each(gradients, list(cavs))
    assert each.sign_count.tolist() == batched.sign_count.tolist()
    assert each.magnitude == pytest.approx(batched.magnitude, rel=1e-5, abs=1e-6)
    assert each.cosine == pytest.approx(batched.cosine, rel=1e-5, abs=1e-7)
    assert each.negative_count is not None and batched.negative_count is not None
    assert each.negative_count.tolist() == batched.negative_count.tolist()


def test_pair_scores_each_does_not_depend_on_the_other_cavs_bit_for_bit():
    """The random pairs are scored in groups that differ between a serial run and xdist workers."""
    gen = torch.Generator().manual_seed(3)
    gradients = torch.randn(20, 5000, generator=gen)
    cavs = list(torch.randn(37, 5000, generator=gen))
    together = pair_scores_each(gradients, cavs)
    for k in (0, 5, 36):
        alone = pair_scores_each(gradients, [cavs[k]])
        in_another_group = pair_scores_each(gradients, [cavs[(k + 1) % 37], cavs[k], cavs[(k + 2) % 37]])
        for field in ("sign_count", "magnitude", "cosine", "negative_count"):
            value = getattr(together, field)[k]
            assert getattr(alone, field)[0] == value
            assert getattr(in_another_group, field)[1] == value


def test_pair_scores_each_of_the_opposite_cav_is_negated_and_swapped_exactly():
    """The engine scores a random pair's CAV in one orientation and enters the other from it."""
    gen = torch.Generator().manual_seed(4)
    gradients = torch.randn(13, 900, generator=gen)
    cav = torch.randn(900, generator=gen)
    forward, backward = pair_scores_each(gradients, [cav]), pair_scores_each(gradients, [-cav])
    assert backward.cosine[0] == -forward.cosine[0]
    assert backward.magnitude[0] == -forward.magnitude[0]
    assert backward.sign_count[0] == forward.negative_count[0]  # type: ignore[index]
    assert backward.negative_count[0] == forward.sign_count[0]  # type: ignore[index]


def test_pair_scores_each_edge_cases():
    empty = pair_scores_each(torch.zeros(3, 4), [])
    assert empty.cosine.shape == (0,)
    zero = pair_scores_each(torch.zeros(3, 4), [torch.zeros(4)])
    assert zero.cosine.tolist() == [0.0] and zero.sign_count.tolist() == [0.0]
    with pytest.raises(ValueError, match="do not match"):
        pair_scores_each(torch.zeros(3, 4), [torch.zeros(4), torch.zeros(5)])


# -- the null ---------------------------------------------------------------------------------


def test_leave_one_out_null_by_hand():
    pairwise = np.array([[0.0, 0.2, -0.1], [-0.2, 0.0, 0.4], [0.1, -0.4, 0.0]])
    null = leave_one_out_null(pairwise)
    assert null.tolist() == pytest.approx([(0.2 - 0.1) / 3, (-0.2 + 0.4) / 3, (0.1 - 0.4) / 3])
    assert null.sum() == pytest.approx(0.0)  # antisymmetry: the null is centred by construction


def test_leave_one_out_null_ignores_the_diagonal():
    pairwise = np.array([[5.0, 1.0], [-1.0, 7.0]])
    assert leave_one_out_null(pairwise).tolist() == pytest.approx([0.5, -0.5])


def test_under_an_additive_set_effect_the_concept_and_the_null_are_alike():
    """statistic(a vs b) = e_a - e_b: the concept's mean over N sets is e_c - mean(e),
    and each null value is e_i - mean(e): the same form, which is what the /N scaling buys."""
    rng = np.random.default_rng(0)
    effects = rng.normal(size=8)
    concept_effect = 0.7
    pairwise = effects[:, None] - effects[None, :]
    null = leave_one_out_null(pairwise)
    assert null == pytest.approx(effects - effects.mean())
    concept_statistic = np.mean(concept_effect - effects)
    assert concept_statistic == pytest.approx(concept_effect - effects.mean())


# -- the test against the null ------------------------------------------------------------------


@pytest.mark.parametrize("value", [0.31, -0.05, 0.02])
def test_t_statistic_is_a_prediction_interval_test(value):
    """One new value against N null values: scipy's pooled two-sample t-test with a sample of one
    gives the same t on N - 1 degrees of freedom."""
    null = np.array([0.01, -0.03, 0.02, 0.05, -0.01, 0.0, -0.04, 0.03])
    n = len(null)
    expected_t = (value - null.mean()) / (null.std(ddof=1) * math.sqrt(1 + 1 / n))
    reference = stats.ttest_ind([value], null, equal_var=True, alternative="greater")
    assert reference.statistic == pytest.approx(expected_t)
    positive = compare_to_null(value, null, "positive")
    negative = compare_to_null(value, null, "negative")
    either = compare_to_null(value, null, "either")
    assert positive.statistic == pytest.approx(expected_t)
    assert positive.p_value == pytest.approx(reference.pvalue)
    assert negative.p_value == pytest.approx(stats.t.cdf(expected_t, n - 1))
    assert either.p_value == pytest.approx(stats.ttest_ind([value], null, equal_var=True).pvalue)
    assert positive.p_value + negative.p_value == pytest.approx(1.0)
    assert either.p_value == pytest.approx(2 * min(positive.p_value, negative.p_value))


def test_rank_p_values_by_hand():
    null = np.array([0.1, 0.2, 0.2, 0.3, 0.4])
    # value 0.2: 4 null values >= it, 3 <= it
    assert compare_to_null(0.2, null, "positive", "rank").p_value == pytest.approx((1 + 4) / 6)
    assert compare_to_null(0.2, null, "negative", "rank").p_value == pytest.approx((1 + 3) / 6)
    assert compare_to_null(0.2, null, "either", "rank").p_value == pytest.approx(min(1.0, 2 * 4 / 6))
    # beyond every null value: the smallest attainable p-value, 1 / (N + 1)
    top = compare_to_null(9.0, null, "positive", "rank")
    assert top.p_value == pytest.approx(1 / 6) and top.p_value_rank == top.p_value
    # the t-test reports the rank p-value alongside
    assert compare_to_null(9.0, null, "positive", "t").p_value_rank == pytest.approx(1 / 6)


def test_zero_variance_null_is_defined():
    null = np.zeros(6)
    same = compare_to_null(0.0, null, "positive")
    assert (same.statistic, same.p_value, same.p_value_rank) == (0.0, 1.0, 1.0)
    above = compare_to_null(0.2, null, "positive")
    assert above.statistic == math.inf and above.p_value == pytest.approx(1 / 7)  # the rank p-value
    below = compare_to_null(0.2, null, "negative")
    assert below.p_value == pytest.approx(1.0)
    for result in (same, above, below, compare_to_null(-0.2, null, "either")):
        assert not math.isnan(result.statistic) and not math.isnan(result.p_value)


def test_all_equal_values_are_never_significant_and_never_nan():
    null = np.full(10, 0.125)
    for direction in ("positive", "negative", "either"):
        for test in ("t", "rank"):
            result = compare_to_null(0.125, null, direction, test)
            assert result.p_value == 1.0 and result.statistic == 0.0


def test_tiny_spread_relative_to_the_values_counts_as_none():
    null = 1e6 + np.array([0.0, 1e-8, -1e-8, 0.0])  # spread below float resolution of the values
    result = compare_to_null(1e6, null, "either")
    assert result.p_value == 1.0


def test_unknown_direction_is_an_error():
    with pytest.raises(ConfigurationError, match="direction"):
        compare_to_null(0.0, np.zeros(3), "up")  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-1, 1, allow_nan=False), min_size=3, max_size=30),
    st.floats(-2, 2, allow_nan=False),
)
def test_p_values_are_probabilities(null, value):
    for direction in ("positive", "negative", "either"):
        for test in ("t", "rank"):
            result = compare_to_null(value, np.array(null), direction, test)
            assert 0.0 <= result.p_value <= 1.0
            assert 0.0 < result.p_value_rank <= 1.0
            assert not math.isnan(result.statistic)


# -- corrections ----------------------------------------------------------------------------------


def test_holm_and_bonferroni_by_hand():
    p = [0.01, 0.04, 0.03]
    # Holm: sorted 0.01*3 = 0.03, 0.03*2 = 0.06, then max(0.06, 0.04*1) = 0.06
    assert adjust_p_values(p, "holm") == pytest.approx([0.03, 0.06, 0.06])
    assert adjust_p_values(p, "bonferroni") == pytest.approx([0.03, 0.12, 0.09])
    assert adjust_p_values(p, "none") == pytest.approx(p)
    assert adjust_p_values([0.5, 0.6], "bonferroni") == [1.0, 1.0]
    assert adjust_p_values([0.02], "holm") == [0.02]


def test_holm_ties_keep_their_order_and_value():
    assert adjust_p_values([0.02, 0.02, 0.5], "holm") == pytest.approx([0.06, 0.06, 0.5])


@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=8))
def test_holm_lies_between_raw_and_bonferroni(p):
    holm = adjust_p_values(p, "holm")
    bonferroni = adjust_p_values(p, "bonferroni")
    for raw, h, b in zip(p, holm, bonferroni):
        assert raw - 1e-12 <= h <= b + 1e-12
    # monotone: a smaller raw p-value never gets a larger adjusted one
    order = np.argsort(p, kind="stable")
    assert all(holm[order[k]] <= holm[order[k + 1]] + 1e-12 for k in range(len(p) - 1))


def test_unknown_correction_is_an_error():
    with pytest.raises(ConfigurationError, match="correction"):
        adjust_p_values([0.1], "sidak")  # type: ignore[arg-type]


# -- feasibility ------------------------------------------------------------------------------------


def test_t_test_needs_three_random_sets():
    check_test_feasible(0.05, 3, 2, "holm", "t")
    with pytest.raises(InsufficientDataError, match="2 random set\\(s\\) are too few: at least 3 are needed"):
        check_test_feasible(0.05, 2, 2, "holm", "t")


@pytest.mark.parametrize(
    ("alpha", "layers", "correction", "needed"),
    [(0.05, 1, "holm", 20), (0.05, 3, "holm", 60), (0.05, 3, "bonferroni", 60), (0.05, 3, "none", 20),
     (0.1, 1, "holm", 10), (0.01, 2, "holm", 200)],
)
def test_rank_test_needs_enough_sets_to_reach_alpha(alpha, layers, correction, needed):
    assert required_random_sets(alpha, layers, correction, "rank") == needed
    m = 1 if correction == "none" else layers
    assert m / (needed + 1) < alpha <= m / needed  # the least N whose smallest p-value is below alpha
    check_test_feasible(alpha, needed, layers, correction, "rank")
    with pytest.raises(InsufficientDataError, match=f"{needed - 1} random set\\(s\\) are too few: at least {needed}"):
        check_test_feasible(alpha, needed - 1, layers, correction, "rank")


def test_rank_test_at_the_minimum_can_be_significant():
    """With exactly the required number of sets, an extreme concept does pass (strictly below alpha)."""
    needed = required_random_sets(0.05, 2, "holm", "rank")
    null = np.linspace(-1, 1, needed)
    p = compare_to_null(5.0, null, "positive", "rank").p_value
    assert adjust_p_values([p, p], "holm")[0] < 0.05


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 1.5])
def test_alpha_must_be_a_probability(alpha):
    with pytest.raises(ConfigurationError, match="alpha"):
        check_test_feasible(alpha, 10, 1, "holm", "t")


def test_unknown_null_test_is_an_error():
    with pytest.raises(ConfigurationError, match="null test"):
        check_test_feasible(0.05, 10, 1, "holm", "bootstrap")  # type: ignore[arg-type]


# -- degenerate cases through the engine -------------------------------------------------------------


class _Detached(torch.nn.Module):
    """The target ignores ``unused``'s output: every gradient there is exactly zero."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = torch.nn.Linear(12, 6)
        self.head = torch.nn.Linear(12, 2)

    def forward(self, x):
        flat = x.flatten(1)
        return self.head(flat) + 0.0 * self.unused(flat).sum(1, keepdim=True).detach()


def _sets(n_sets: int, size: int, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.rand(size, 3, 2, 2, generator=gen) + 0.1 * k for k in range(n_sets)]


def test_zero_gradients_give_a_defined_not_significant_verdict():
    from pytest_tcav import TCAV

    concept, *randoms = _sets(5, 8)
    result = TCAV(_Detached()).test(concept, target=1, inputs=_sets(1, 6, seed=1)[0], layers=["unused", "head"],
                                    random_sets=randoms, direction="either")
    unused = result.layer("unused")
    assert unused.statistic == 0.0 and unused.null_sd == 0.0 and unused.score == 0.0
    assert (unused.t_statistic, unused.p_value, unused.p_corrected, unused.significant) == (0.0, 1.0, 1.0, False)
    for layer in result.layers:
        values = [layer.statistic, layer.null_mean, layer.null_sd, layer.t_statistic, layer.p_value,
                  layer.p_value_rank, layer.p_corrected, layer.cav_accuracy]
        assert not any(math.isnan(v) for v in values), layer


def test_engine_reports_how_many_examples_and_random_sets_are_needed():
    from pytest_tcav import TCAV

    model = _Detached()
    concept, *randoms = _sets(4, 8)
    inputs = _sets(1, 6, seed=1)[0]
    with pytest.raises(InsufficientDataError, match="2 random set\\(s\\) are too few: at least 3"):
        TCAV(model).test(concept, target=1, inputs=inputs, layers=["head"], random_sets=randoms[:2])
    with pytest.raises(InsufficientDataError, match="at least 20 are needed"):
        TCAV(model, null_test="rank").test(concept, target=1, inputs=inputs, layers=["head"], random_sets=randoms)
    with pytest.raises(InsufficientDataError, match="'small' has 4 example\\(s\\); a CAV needs at least 5"):
        TCAV(model).test(Concept("small", concept[:4]), target=1, inputs=inputs, layers=["head"],
                         random_sets=randoms)

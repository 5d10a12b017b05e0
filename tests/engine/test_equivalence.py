"""The equivalence test, the detectable effect, the CAV-accuracy gate, and negation symmetry.

Statistical claims are checked on data whose truth is known: a Gaussian
additive set-effect model (the one docs/statistics.md derives the tests from),
simulated here; the synthetic models' ground truth is in test_ground_truth.py.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from pytest_tcav.checks.significance import judge
from pytest_tcav.engine.equivalence import (
    cav_gate_p,
    detectable_effect,
    equivalence_p,
    layer_verdict,
    spread_ratio,
    suggest_random_sets,
)
from pytest_tcav.engine.results import LayerResult, TCAVResult


def _simulate(n: int, effect: float, pair_noise: float, rng: np.random.Generator) -> tuple[float, float, np.ndarray]:
    """One concept test under ``s(a, b) = e_a - e_b + eps_ab``: (estimate, null sd, concept's per-set statistics)."""
    e = rng.normal(0.0, 1.0, n)
    eps = np.triu(rng.normal(0.0, pair_noise, (n, n)), 1)
    null = (e[:, None] - e[None, :] + eps - eps.T).sum(1) / n
    unit = math.sqrt(1.0 + pair_noise**2 / n)  # the null's population sd
    concept = effect * unit - e + rng.normal(0.0, pair_noise, n)
    return float(concept.mean() - null.mean()), float(null.std(ddof=1)), concept


@pytest.mark.slow  # over a second
@pytest.mark.parametrize(("n", "margin", "pair_noise"), [(10, 1.0, 1.5), (5, 2.0, 1.0), (20, 0.5, 0.0)])
def test_false_equivalence_at_the_margin_is_at_most_alpha(n, margin, pair_noise):
    """A concept whose effect sits exactly at the margin is shown below it at most alpha of the time."""
    rng = np.random.default_rng(n)
    reps, alpha = 600, 0.05
    shown = sum(equivalence_p(*_simulate(n, margin, pair_noise, rng), margin, "positive") < alpha
                for _ in range(reps))
    bound = stats.binom.ppf(0.999, reps, alpha)
    print(f"N={n}, margin {margin}, pair noise {pair_noise}: {shown}/{reps} shown (bound {bound:.0f})")
    assert shown <= bound


@pytest.mark.slow  # over a second
def test_equivalence_is_shown_at_zero_effect_with_enough_sets_and_not_with_few():
    rng = np.random.default_rng(1)
    many = [equivalence_p(*_simulate(40, 0.0, 1.0, rng), 2.0, "either") < 0.05 for _ in range(100)]
    few = [equivalence_p(*_simulate(3, 0.0, 1.0, rng), 0.5, "either") < 0.05 for _ in range(100)]
    assert np.mean(many) >= 0.95
    assert np.mean(few) <= 0.05


@pytest.mark.slow  # over a second
@settings(max_examples=60, deadline=None)
@given(estimate=st.floats(-3, 3), sd=st.floats(0.05, 3), spread=st.floats(0.05, 5), n=st.integers(3, 60),
       m1=st.floats(0.05, 5), m2=st.floats(0.05, 5), direction=st.sampled_from(["positive", "negative", "either"]))
def test_equivalence_p_never_rises_with_the_margin(estimate, sd, spread, n, m1, m2, direction):
    low, high = sorted((m1, m2))
    values = np.linspace(-1.0, 1.0, n) * spread + estimate
    assert equivalence_p(estimate, sd, values, high, direction) <= equivalence_p(estimate, sd, values, low,
                                                                                 direction) + 1e-12


@pytest.mark.slow  # over a second
@settings(max_examples=60, deadline=None)
@given(fraction=st.floats(-0.5, 0.5), spread=st.floats(0.1, 3), n=st.integers(3, 40), extra=st.integers(1, 40),
       margin=st.floats(0.2, 4), direction=st.sampled_from(["positive", "negative", "either"]))
def test_equivalence_p_never_rises_with_more_random_sets(fraction, spread, n, extra, margin, direction):
    """The same estimate, null spread and per-set spread, measured on more random sets, is shown at least as well.

    The estimate lies within half the margin (the property's premise: the truth is inside);
    per-set statistics keep their standard deviation whatever N.
    """
    sd = 1.0

    def p(count: int) -> float:
        base = np.linspace(-1.0, 1.0, count)
        values = base / base.std(ddof=1) * spread + fraction * margin * sd
        return equivalence_p(fraction * margin * sd, sd, values, margin, direction)

    assert p(n + extra) <= p(n) + 1e-9


def test_equivalence_edge_cases():
    assert equivalence_p(0.0, 0.0, [0.1, 0.2, 0.3], 1.0, "either") == 1.0  # no unit: nothing shown
    assert equivalence_p(0.0, 1.0, [0.1, 0.2], 1.0, "either") == 1.0  # too few sets
    assert equivalence_p(0.0, 1.0, [0.5, 0.5, 0.5], 1.0, "positive") == 0.0  # no spread: exact
    assert equivalence_p(5.0, 1.0, [0.1, 0.2, 0.3, 0.1], 1.0, "positive") > 0.5
    assert equivalence_p(5.0, 1.0, [0.1, 0.2, 0.3, 0.1], 1.0, "negative") < 0.05
    values = [0.1, -0.2, 0.3, 0.0, -0.1]
    assert equivalence_p(0.1, 1.0, values, 1.0, "either") == max(
        equivalence_p(0.1, 1.0, values, 1.0, "positive"), equivalence_p(0.1, 1.0, values, 1.0, "negative"))


def test_detectable_effect_falls_with_random_sets_towards_the_level_quantile():
    values = [detectable_effect(n, 2.0, 0.05, 3, "holm", "positive") for n in (3, 5, 10, 20, 50, 200)]
    assert values == sorted(values, reverse=True)
    assert values[-1] > stats.norm.ppf(1 - 0.05 / 3)  # a random-set-sized effect is never detectable
    # two-sided and more layers cost power; the correction "none" does not divide alpha
    assert detectable_effect(10, 2.0, 0.05, 3, "holm", "either") > detectable_effect(10, 2.0, 0.05, 3, "holm",
                                                                                     "positive")
    assert detectable_effect(10, 2.0, 0.05, 3, "none", "positive") == detectable_effect(10, 2.0, 0.05, 1, "holm",
                                                                                        "positive")


def test_detectable_effect_has_its_power_under_the_simulated_model():
    """An effect of exactly the detectable size is found about 80% of the time."""
    rng = np.random.default_rng(5)
    n, alpha = 10, 0.05
    target = detectable_effect(n, 1.0, alpha, 1, "none", "positive")  # no pair noise: ratio 1
    found = 0
    for _ in range(400):
        estimate, sd, _values = _simulate(n, target, 0.0, rng)
        t = estimate / (sd * math.sqrt(1 + 1 / n))
        found += stats.t.sf(t, n - 1) < alpha
    assert 0.72 <= found / 400 <= 0.88


def test_suggested_random_sets_reach_the_limit():
    n = suggest_random_sets(4.0, 3, 2.0, 0.05, 3, "holm", "positive")
    assert n is not None and n > 3
    assert detectable_effect(n, 2.0, 0.05, 3, "holm", "positive") <= 4.0 < detectable_effect(
        n - 1, 2.0, 0.05, 3, "holm", "positive")
    assert suggest_random_sets(1.0, 10, 2.0, 0.05, 3, "holm", "positive") is None  # below the asymptote


def test_spread_ratio_has_a_floor_of_one():
    assert spread_ratio([0.0, 0.0, 0.0], 1.0) == 1.0
    assert spread_ratio([-2.0, 0.0, 2.0], 1.0) == pytest.approx(4.0)


def test_cav_gate():
    assert cav_gate_p([1.0] * 5) == 0.0
    assert cav_gate_p([0.5] * 5) == 1.0
    assert cav_gate_p([0.9, 0.95, 0.85, 1.0]) < 0.01
    assert cav_gate_p([0.4, 0.6, 0.5, 0.45, 0.55]) > 0.4
    # a found effect stands (the significance test is calibrated whatever the CAVs' accuracy) ...
    assert layer_verdict(True, 0.5, 0.5, 0.05, None) == "significant"
    # ... a silence needs a layer that sees the concept
    assert layer_verdict(False, 0.5, 0.5, 0.05, None) == "inconclusive"
    assert layer_verdict(False, 0.001, 0.7, 0.05, 0.8) == "inconclusive"
    assert layer_verdict(False, 0.001, 0.9, 0.05, 0.8) == "not significant"
    # an effect in the other direction shows the layer sees the concept
    assert layer_verdict(False, 0.5, 0.5, 0.05, None, effect_p=0.001) == "not significant"


def test_gate_calls_chance_level_cavs_inconclusive_at_most_rarely_wrong():
    """Accuracies of CAVs that cannot beat chance pass the gate at most alpha of the time."""
    rng = np.random.default_rng(9)
    passed = sum(cav_gate_p(rng.binomial(12, 0.5, 10) / 12) < 0.05 for _ in range(1000))
    assert passed <= stats.binom.ppf(0.999, 1000, 0.05)


# -- results: old dicts, negation symmetry ---------------------------------------------------------


def _layer(p: float, statistic: float, accuracies: list[float] | None = None, **extra) -> LayerResult:
    return LayerResult(layer="l", score=0.5, magnitude=0.0, statistic=statistic, null_mean=0.0, null_sd=1.0,
                       t_statistic=statistic, p_value=p, p_value_rank=p, p_corrected=p, cav_accuracy=0.9,
                       significant=p < 0.05, concept_statistics=[statistic - 0.5, statistic, statistic + 0.5],
                       cav_accuracies=accuracies if accuracies is not None else [0.9, 0.95, 0.85], **extra)


def _result(layers: list[LayerResult], direction: str = "positive", **extra) -> TCAVResult:
    return TCAVResult(concept="c", target="1", direction=direction, alpha=0.05, correction="holm",
                      null_test="t", method="gradient", n_random=3, n_concept_examples=10, n_inputs=10, seed=0,
                      layers=layers, **extra)


def test_a_result_written_before_verdicts_loads_with_them_derived():
    new = _result([_layer(0.01, 3.0)]).to_dict()
    old = dict(new)
    old["layers"] = [{k: v for k, v in layer.items() if k not in (
        "effect", "detectable_effect", "cav_p_value", "verdict", "equivalence_p", "equivalence_p_corrected")}
        for layer in new["layers"]]
    del old["margin"], old["min_cav_accuracy"]
    loaded = TCAVResult.from_dict(old)
    layer = loaded.layers[0]
    assert layer.verdict == "significant" and layer.effect == 3.0
    assert math.isfinite(layer.detectable_effect) and layer.detectable_effect == new["layers"][0]["detectable_effect"]
    assert loaded.margin is None
    assert TCAVResult.from_dict(new) == loaded


@pytest.mark.slow  # over a second
@settings(max_examples=200, deadline=None)
@given(ps=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=4),
       require=st.sampled_from(["all", "any"]), direction=st.sampled_from(["positive", "negative", "either"]))
def test_insignificant_passes_exactly_when_significant_fails(ps, require, direction):
    """Negation symmetry: with the same arguments (no score range, no inconclusive layer), exactly one passes."""
    result = _result([dataclasses.replace(_layer(p, 1.0), layer=f"l{k}") for k, p in enumerate(ps)], direction)
    significant = judge(result, "significant", require, None).passed
    insignificant = judge(result, "insignificant", "all" if require == "any" else "any", None).passed
    # "all layers significant" fails exactly when "some layer not significant" holds, and vice versa
    assert significant != insignificant
    same = judge(result, "insignificant", require, None).passed
    if len(ps) == 1:
        assert significant != same


def test_an_inconclusive_layer_fails_both_claims():
    result = _result([_layer(0.5, 0.1, accuracies=[0.5, 0.45, 0.55], verdict="")])
    assert result.layers[0].verdict == "not significant"  # a LayerResult built by hand keeps its old meaning
    gated = _result([_layer(0.5, 0.1, accuracies=[0.5, 0.45, 0.55], verdict="inconclusive")])
    for expectation in ("significant", "insignificant"):
        judgement = judge(gated, expectation, "all", None)
        assert not judgement.passed
        assert "the layer cannot tell the concept from random examples, so it can show neither" in judgement.reason
        assert "another layer or giving more or cleaner examples" in judgement.reason


def test_a_significant_negative_effect_says_lowers_never_relies():
    result = _result([_layer(0.001, -4.0)], direction="either")
    judgement = judge(result, "insignificant", "all", None)
    assert not judgement.passed
    assert "moving towards the concept lowers the target" in judgement.reason
    assert "relies" not in judgement.reason
    assert "lack something of the target class that the random images have" in judgement.reason
    positive = judge(_result([_layer(0.001, 4.0)], direction="either"), "insignificant", "all", None)
    assert "the model relies on it" in positive.reason.lower() and "raises the target" in positive.reason

"""What a "not significant" can claim: the equivalence test, the detectable effect, the CAV-accuracy gate.

Units.  A concept's *effect* is its statistic's distance from the null's mean
in units of the null's standard deviation (the random sets' spread): ``effect = 1``
reads "as far from the average random set as one random set typically is".
Margins (``margin=``) and the detectable effect share that unit.

Equivalence.  Once the concept is given, its effect ``theta`` is a fixed
number; what varies is the random sets (their mean, which the concept's
statistic is measured against) and the pair noise of the concept's CAVs.  The
concept's statistic is the mean of its ``N`` per-set statistics, which given the
concept are independent draws around ``theta``: its standard error is their
standard deviation over ``sqrt(N)`` (not the prediction interval's
``sd(null) * sqrt(1 + 1/N)``, which adds the spread of a *new* random concept).
The unit itself, the null's standard deviation, is estimated from the same
``N`` sets, and at the margin its uncertainty weighs as much as the estimate's,
so the test is a generalized (Weerahandi) p-value over both:
docs/statistics.md derives it and gives its measured error rate.

All functions are pure and deterministic (quadrature, no sampling), so benchmarks can call them on stored numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import optimize, special
from scipy import stats as scipy_stats

#: Power at which ``detectable_effect`` is defined.
POWER = 0.8
#: Default of ``tcav_max_detectable_effect`` (docs/statistics.md: the measurements behind it).
DEFAULT_MAX_DETECTABLE_EFFECT = 4.0
#: Log-odds nodes of the chi-square quantile in the generalized p-value, and their trapezoid weights.
_STEP = 0.05
_X = np.arange(-800, 801) * _STEP
_WEIGHT = special.expit(_X) * special.expit(-_X)
#: The inputs below which the synthetic measurements did not go (docs/statistics.md#power).
MIN_SUGGESTED_INPUTS = 10


def effect_size(statistic: float, null_mean: float, null_sd: float) -> float:
    """The concept's distance from the null's mean in null standard deviations (0 when both are 0)."""
    diff = statistic - null_mean
    if null_sd <= 0.0 or not math.isfinite(null_sd):
        return 0.0 if diff == 0.0 else math.copysign(math.inf, diff)
    return diff / null_sd


def spread_ratio(concept_statistics: Sequence[float], null_sd: float) -> float:
    """``var(concept's per-set statistics) / var(null)``, at least 1.

    Given the concept, the variance of its statistic is ``ratio * var(null) / N``.
    Its per-set statistics vary with the random sets' effects, as the null does,
    plus the pair noise of the concept's CAVs; the floor of 1 is the value
    without pair noise, so an unlucky small sample never claims more precision.
    """
    values = np.asarray(concept_statistics, dtype=np.float64)
    if len(values) < 2 or null_sd <= 0.0:
        return 1.0
    ratio = float(values.var(ddof=1)) / (null_sd * null_sd)
    return max(1.0, ratio) if math.isfinite(ratio) else 1.0


def per_layer_alpha(alpha: float, n_layers: int, correction: str) -> float:
    """The level one layer must reach: Holm's first step and Bonferroni divide by the layers."""
    return alpha if correction == "none" else alpha / max(1, n_layers)


def _power(effect: float, n: int, ratio: float, level: float, direction: str) -> float:
    """Power of the prediction-interval t-test against a concept whose effect is ``effect``.

    With ``lam = sqrt(ratio / N)``, the test statistic is ``lam * T / sqrt(1 + 1/N)``,
    ``T`` noncentral t on ``N - 1`` degrees of freedom with noncentrality ``effect / lam``.
    """
    df = n - 1
    lam = math.sqrt(ratio / n)
    inflate = math.sqrt(1.0 + 1.0 / n)
    if direction == "either":
        crit = float(scipy_stats.t.ppf(1.0 - level / 2.0, df)) * inflate / lam
        nc = abs(effect) / lam
        # the far tail (below -crit) is tiny once the effect matters; scipy's nct returns NaN there
        far = float(np.nan_to_num(scipy_stats.nct.cdf(-crit, df, nc), nan=0.0))
        return float(scipy_stats.nct.sf(crit, df, nc)) + far
    crit = float(scipy_stats.t.ppf(1.0 - level, df)) * inflate / lam
    return float(scipy_stats.nct.sf(crit, df, abs(effect) / lam))


def detectable_effect(n: int, ratio: float, alpha: float, n_layers: int, correction: str,
                      direction: str, power: float = POWER) -> float:
    """The smallest effect the significance test finds with probability ``power``.

    In the direction tested, at the per-layer level the correction leaves
    (Holm's first step, the conservative one), for ``n`` random sets and a
    concept whose per-set statistics vary ``ratio`` times as much as the null.
    It does not fall below the normal quantile of the level however many sets
    there are: the test asks whether the concept stands out from random sets,
    and an effect of the size random sets have cannot.
    """
    if n < 3:
        return math.inf
    level = per_layer_alpha(alpha, n_layers, correction)

    def gap(effect: float) -> float:
        return _power(effect, n, ratio, level, direction) - power

    high = 1.0
    while gap(high) < 0.0:
        high *= 2.0
        if high > 1e6:
            return math.inf
    return float(optimize.brentq(gap, 0.0, high, xtol=1e-6))


def suggest_random_sets(limit: float, n: int, ratio: float, alpha: float, n_layers: int, correction: str,
                        direction: str, most: int = 1000) -> int | None:
    """The fewest random sets with which ``detectable_effect`` is at most ``limit``; None if none up to ``most``."""
    if detectable_effect(most, ratio, alpha, n_layers, correction, direction) > limit:
        return None
    low, high = max(3, n), most
    if detectable_effect(low, ratio, alpha, n_layers, correction, direction) <= limit:
        return low
    while high - low > 1:
        mid = (low + high) // 2
        if detectable_effect(mid, ratio, alpha, n_layers, correction, direction) <= limit:
            high = mid
        else:
            low = mid
    return high


def suggest_inputs(n_inputs: int) -> int:
    """Inputs to pair with the suggested random sets: as many as now (at least the measured floor).

    The inputs are shared by the concept and every random set, so they fix the
    direction the statistic measures rather than add noise between sets; on the
    synthetic models the null's spread and the spread ratio moved by under 10%
    from 10 to 160 inputs (docs/statistics.md#power).  More inputs do not buy power.
    """
    return max(int(n_inputs), MIN_SUGGESTED_INPUTS)


def _upper_p(estimate: float, null_sd: float, se: float, n: int, margin: float) -> float:
    """Generalized p-value of ``theta >= margin * sigma``: P(theta* >= margin * sigma*).

    ``theta* = estimate - T * se`` (``T`` Student t, ``N - 1`` df) and
    ``sigma* = sd * sqrt((N - 1) / U)`` (``U`` chi-square, ``N - 1`` df), independent;
    the expectation over ``U`` is taken on the log-odds of its quantile, ``q = expit(x)``,
    by the trapezoid rule on ``x`` in [-40, 40]: the weight ``q (1 - q)`` decays like
    ``exp(-|x|)``, so both tails are covered far below any alpha (a fixed grid of
    quantiles would cut them off at its first and last cell).
    """
    df = n - 1
    if se <= 0.0:  # theta* = estimate exactly: the probability that sigma* is small enough
        return float(scipy_stats.chi2.sf(df * (margin * null_sd / estimate) ** 2, df)) if estimate > 0 else 0.0
    u = np.where(_X < 0, scipy_stats.chi2.ppf(special.expit(_X), df), scipy_stats.chi2.isf(special.expit(-_X), df))
    with np.errstate(divide="ignore"):
        bound = margin * null_sd * np.sqrt(df / u)
    values = scipy_stats.t.cdf((estimate - bound) / se, df) * _WEIGHT
    return float(min(1.0, max(0.0, np.sum(values) * _STEP)))


def equivalence_p(estimate: float, null_sd: float, concept_statistics: Sequence[float], margin: float,
                  direction: str) -> float:
    """p-value of "the effect is at least ``margin``" (in null SDs); small: the effect is shown below it.

    ``estimate`` is the concept's statistic minus the null's mean; ``positive``
    tests ``effect < margin``, ``negative`` ``effect > -margin``, ``either`` both
    (two one-sided tests: the larger p-value).  A null without spread has no
    unit, so nothing can be shown (p = 1).
    """
    values = np.asarray(concept_statistics, dtype=np.float64)
    n = len(values)
    if n < 3:
        return 1.0
    return _two_one_sided(estimate, null_sd, float(values.std(ddof=1)) / math.sqrt(n), n, margin, direction)


def conditional_equivalence_p(estimate: float, null_sd: float, k: int, margin: float, direction: str) -> float:
    """:func:`equivalence_p` against the pseudo-concepts' null (``null="pseudo"``).

    Given the library the concept's statistic is fixed; ``estimate`` (it minus
    the pseudo-concepts' mean) is uncertain through that mean alone, whose
    standard error is ``sd / sqrt(K)``, and the unit ``sd`` is estimated from the
    same ``K`` values: the same generalized p-value on ``K - 1`` degrees of freedom.
    """
    if k < 3:
        return 1.0
    return _two_one_sided(estimate, null_sd, null_sd / math.sqrt(k), k, margin, direction)


def _two_one_sided(estimate: float, null_sd: float, se: float, n: int, margin: float, direction: str) -> float:
    """The equivalence p-value in ``direction`` (``either``: the larger of the two one-sided ones); 1 without a
    unit (a null without spread) or a margin."""
    if null_sd <= 0.0 or not math.isfinite(null_sd) or not margin > 0.0:
        return 1.0
    upper = _upper_p(estimate, null_sd, se, n, margin)
    lower = _upper_p(-estimate, null_sd, se, n, margin)
    if direction == "positive":
        return upper
    if direction == "negative":
        return lower
    return max(upper, lower)


def cav_gate_p(accuracies: Sequence[float], null_accuracies: Sequence[float] | None = None) -> float:
    """p-value of "the layer tells the concept from random images no better than random images from each other".

    ``null_accuracies`` holds, per random set, the mean held-out accuracy of its
    CAVs against the other random sets: what "chance" is for sets of this size
    and kind (a sample of 30 mixed images already differs a little from another
    in composition, so its CAVs beat 0.5 on held-out data; docs/statistics.md).
    The concept's mean accuracy is compared with them as the significance test
    compares statistics: a one-sided prediction-interval t-test on N - 1 degrees
    of freedom.  Without them (results written before), the concept's N
    accuracies are t-tested against 0.5.  Without spread the answer is exact.
    """
    acc = np.asarray(accuracies, dtype=np.float64)
    if len(acc) == 0:
        return 1.0
    mean = float(acc.mean())
    null = np.asarray(null_accuracies if null_accuracies is not None else [], dtype=np.float64)
    if len(null) >= 3:
        centre, sd, inflate, df = float(null.mean()), float(null.std(ddof=1)), math.sqrt(1.0 + 1.0 / len(null)), \
            len(null) - 1
    else:
        centre, sd = 0.5, float(acc.std(ddof=1)) if len(acc) > 1 else 0.0
        inflate, df = 1.0 / math.sqrt(len(acc)), len(acc) - 1
    if sd <= 1e-12 or df < 1:
        return 0.0 if mean > centre else 1.0
    return float(scipy_stats.t.sf((mean - centre) / (sd * inflate), df))


def layer_verdict(significant: bool, cav_p: float, cav_accuracy: float, alpha: float,
                  min_cav_accuracy: float | None, effect_p: float = 1.0) -> str:
    """The layer's verdict: a significant effect stands; a "not significant" needs a layer that sees the concept.

    The significance test is calibrated whatever the CAVs' accuracy (its null is
    built from CAVs of the same quality), so an effect it finds is found at level
    alpha.  What it cannot vouch for is its silence: on a layer that cannot tell
    the concept from random images, "not significant" says nothing about the
    model, and that layer is ``inconclusive``.  Two findings show that the layer
    tells the concept apart: its CAVs classify held-out examples better than the
    random sets' CAVs (``cav_p``), or they point somewhere random CAVs do not,
    an effect in either direction (``effect_p``, two-sided and uncorrected: a
    concept that significantly *lowers* the target is seen by the layer, even
    when the check asks whether it raises it).
    """
    if significant:
        return "significant"
    if min_cav_accuracy is not None and cav_accuracy < min_cav_accuracy:
        return "inconclusive"
    if cav_p < alpha or effect_p < alpha:
        return "not significant"
    return "inconclusive"


def two_sided_p(t_statistic: float, n: int) -> float:
    """The significance test's two-sided p-value from its t statistic (N - 1 degrees of freedom)."""
    if math.isnan(t_statistic) or n < 2:
        return 1.0
    return float(min(1.0, 2.0 * scipy_stats.t.sf(abs(t_statistic), n - 1)))

"""TCAV scores and the significance test.

Scores.  For a CAV ``w`` and target gradients ``g_k`` (one row per input),
``T = g @ w``: ``sign_count`` is the fraction of inputs with ``T > 0`` (the
paper's TCAV score) and ``magnitude`` is the mean of ``T``, both exactly as
Captum defines them.  The test statistic is the mean cosine between ``g_k`` and
``w``: unlike ``sign_count`` it does not saturate at 0 or 1, and unlike
``magnitude`` it does not depend on the CAV's or the gradient's scale.

Null.  With random sets ``R_1..R_N``, each random set takes the concept's place
in turn: its statistic is its summed cosine against the other random sets,
divided by ``N``.  Under the hypothesis that the concept is one more random
set, the concept's statistic and the ``N`` null statistics are (to first order)
exchangeable, so a prediction-interval t-test (one new value against a sample)
is calibrated; docs/statistics.md gives the derivation and the measured
false-positive rate.  The null depends on the random sets only, so it is
computed once and shared by every concept tested against the same sets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
from scipy import stats as scipy_stats

from pytest_tcav.errors import ConfigurationError, InsufficientDataError

if TYPE_CHECKING:
    import torch

Direction = Literal["positive", "negative", "either"]
Correction = Literal["holm", "bonferroni", "none"]
NullTest = Literal["t", "rank"]
DIRECTIONS = ("positive", "negative", "either")
CORRECTIONS = ("holm", "bonferroni", "none")
NULL_TESTS = ("t", "rank")
MIN_RANDOM_SETS_T = 3


@dataclass(frozen=True)
class PairScores:
    """Scores of one set of inputs against several CAVs (one entry per CAV)."""

    sign_count: np.ndarray
    magnitude: np.ndarray
    cosine: np.ndarray
    #: Fraction of inputs whose product is negative: the sign_count of the opposite CAVs, bit for bit
    #: (negating a CAV negates every float32 product exactly), without a second product.
    negative_count: np.ndarray | None = None
    #: Per input (from :func:`pair_scores` only): its share of the CAVs with a positive product, and its mean
    #: cosine with them.  The mean of the shares is the mean of ``sign_count`` and that of the cosines the mean
    #: of ``cosine``: the same sums taken in the other order (equal to within a few ulps, not bit for bit).
    input_share: np.ndarray | None = None
    input_cosine: np.ndarray | None = None


def pair_scores(gradients: torch.Tensor, cav_weights: torch.Tensor) -> PairScores:
    """Scores for every CAV (rows of ``cav_weights``) from target gradients (inputs x features).

    One matrix product for all CAVs: a CAV's scores can differ in the last bits
    with the CAVs it is scored with (the product's rounding depends on the
    number of columns), so this is for CAVs always scored together, such as a
    concept's; :func:`pair_scores_each` scores CAVs that come in varying groups.
    """
    if gradients.dim() != 2 or cav_weights.dim() != 2 or gradients.shape[1] != cav_weights.shape[1]:
        raise ValueError(
            f"gradients {tuple(gradients.shape)} and CAVs {tuple(cav_weights.shape)} do not match"
        )
    grad_norm = gradients.double().norm(dim=1)
    return _scores(gradients, cav_weights, grad_norm)


def pair_scores_each(gradients: torch.Tensor, cav_weights: Sequence[torch.Tensor]) -> PairScores:
    """Scores for every CAV (one weight vector each), each CAV's the same whichever CAVs come with it.

    The random pairs are scored in groups that differ between a serial run
    and pytest-xdist workers, so a CAV's scores must not depend on its group,
    bit for bit: each CAV gets its own matrix-vector product and norm (the
    costly parts, on the whole feature width), and the reductions over the
    inputs run per CAV along a row of a small numpy array, whose order
    depends on the number of inputs only.  Nothing the width of the layer is
    copied per CAV.
    """
    import torch  # here, not at the top: the rest of this module serves `pytest-tcav diff`, which needs no torch

    if gradients.dim() != 2 or any(w.dim() != 1 or w.shape[0] != gradients.shape[1] for w in cav_weights):
        shapes = sorted({tuple(w.shape) for w in cav_weights})
        raise ValueError(f"gradients {tuple(gradients.shape)} and CAVs of shapes {shapes} do not match")
    if not cav_weights:
        empty = np.zeros(0)
        return PairScores(empty, empty, empty, empty)
    grads = gradients.float()
    grad_norm = gradients.double().norm(dim=1).numpy()
    # CAVs x inputs, float32 as Captum computes them; the norms in float64 without a float64 copy of each CAV
    products = torch.stack([grads @ w.float() for w in cav_weights]).numpy()
    cav_norm = np.array([float(torch.linalg.vector_norm(w, dtype=torch.float64)) for w in cav_weights])
    wide = products.astype(np.float64)
    denom = cav_norm[:, None] * grad_norm[None, :]
    cosines = np.where(denom > 0, wide / np.maximum(denom, 1e-300), 0.0).clip(-1.0, 1.0)
    return PairScores((products > 0).mean(1), wide.mean(1), cosines.mean(1), (products < 0).mean(1))


def _scores(gradients: torch.Tensor, cav_weights: torch.Tensor, grad_norm: torch.Tensor) -> PairScores:
    import torch  # here, not at the top: the rest of this module serves `pytest-tcav diff`, which needs no torch

    products = gradients.float() @ cav_weights.float().T  # inputs x CAVs, as Captum computes it
    sign_count = (products > 0).double().mean(0).numpy()
    magnitude = products.double().mean(0).numpy()
    cav_norm = cav_weights.double().norm(dim=1)
    denom = grad_norm[:, None] * cav_norm[None, :]
    cosines = torch.where(denom > 0, products.double() / denom.clamp_min(1e-300), torch.zeros_like(denom))
    # The products are float32 (as Captum's), the norms float64: a gradient parallel to its CAV
    # can come out a few 1e-8 beyond 1.  A cosine is a cosine: keep it in [-1, 1].
    cosines = cosines.clamp(-1.0, 1.0)
    return PairScores(sign_count, magnitude, cosines.mean(0).numpy(), (products < 0).double().mean(0).numpy(),
                      input_share=(products > 0).double().mean(1).numpy(), input_cosine=cosines.mean(1).numpy())


def leave_one_out_null(pairwise: np.ndarray) -> np.ndarray:
    """Null statistics from an antisymmetric matrix of random-vs-random statistics.

    ``pairwise[j, i]`` is the statistic of random set j against random set i.
    Each row's sum over the other sets is divided by N (not N - 1): the concept's
    statistic averages N comparisons, and under an additive set-effect model this
    scaling makes the two exactly comparable (docs/statistics.md).
    """
    n = pairwise.shape[0]
    off = pairwise.copy()
    np.fill_diagonal(off, 0.0)
    return off.sum(1) / n


def _rank_p(value: float, null: np.ndarray, direction: Direction) -> float:
    n = len(null)
    upper = (1 + int(np.sum(null >= value))) / (n + 1)
    lower = (1 + int(np.sum(null <= value))) / (n + 1)
    if direction == "positive":
        return upper
    if direction == "negative":
        return lower
    return min(1.0, 2 * min(upper, lower))


@dataclass(frozen=True)
class NullComparison:
    statistic: float  # t statistic (or the standardised distance for the rank test)
    p_value: float
    p_value_rank: float


def compare_to_null(value: float, null: np.ndarray, direction: Direction, test: NullTest = "t") -> NullComparison:
    """p-value of ``value`` as one more draw from the distribution of ``null``.

    ``t``: prediction-interval t-test, ``(value - mean) / (sd * sqrt(1 + 1/N))`` on
    N - 1 degrees of freedom.  ``rank``: the exact permutation p-value
    ``(1 + #null at least as extreme) / (N + 1)``, free of any distributional
    assumption but never below ``1 / (N + 1)``.  When the null has no spread the
    t statistic is undefined and the rank p-value is used: all-equal scores are a
    defined, conservative answer, never NaN.
    """
    if direction not in DIRECTIONS:
        raise ConfigurationError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    null = np.asarray(null, dtype=np.float64)
    n = len(null)
    rank_p = _rank_p(value, null, direction)
    mean = float(null.mean())
    sd = float(null.std(ddof=1)) if n > 1 else 0.0
    scale = max(abs(mean), abs(value), 1e-300)
    if n < 2 or sd <= 1e-12 * scale:
        if abs(value - mean) <= 1e-12 * scale:
            return NullComparison(0.0, 1.0, 1.0)
        stat = math.copysign(math.inf, value - mean)
        return NullComparison(stat, rank_p, rank_p)
    t = (value - mean) / (sd * math.sqrt(1.0 + 1.0 / n))
    if test == "rank":
        return NullComparison(t, rank_p, rank_p)
    df = n - 1
    if direction == "positive":
        p = float(scipy_stats.t.sf(t, df))
    elif direction == "negative":
        p = float(scipy_stats.t.cdf(t, df))
    else:
        p = float(min(1.0, 2 * scipy_stats.t.sf(abs(t), df)))
    return NullComparison(t, p, rank_p)


def adjust_p_values(p_values: Sequence[float], method: Correction) -> list[float]:
    """Family-wise error correction across layers (Holm step-down, Bonferroni, or none)."""
    if method not in CORRECTIONS:
        raise ConfigurationError(f"correction must be one of {CORRECTIONS}, got {method!r}")
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    if method == "none" or m <= 1:
        return [float(v) for v in np.minimum(p, 1.0)]
    if method == "bonferroni":
        return [float(v) for v in np.minimum(p * m, 1.0)]
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[idx]))
        adjusted[idx] = running
    return [float(v) for v in adjusted]


def required_random_sets(alpha: float, n_layers: int, correction: Correction, test: NullTest,
                         direction: Direction = "positive") -> int:
    """The fewest null values (random sets, or pseudo-concepts) with which the test can reach ``alpha``.

    For the rank test the smallest corrected p-value is ``m / (N + 1)`` (``m``
    layers under Holm or Bonferroni, 1 without correction; twice that for
    ``either``, whose p-value is two-sided), and a verdict needs it strictly
    below ``alpha``: ``N`` is the least integer with ``m / (N + 1) < alpha``.
    """
    if test == "t":
        return MIN_RANDOM_SETS_T
    m = (1 if correction == "none" else n_layers) * (2 if direction == "either" else 1)
    n = max(0, math.floor(m / alpha) - 1)
    while m / (n + 1) >= alpha:  # exact on the same float comparison the verdict uses
        n += 1
    return max(MIN_RANDOM_SETS_T, n)


def check_test_feasible(alpha: float, n_random: int, n_layers: int, correction: Correction, test: NullTest,
                        what: str = "random set", direction: Direction = "positive") -> None:
    """Refuse a test that cannot reach ``alpha``: too few null values (``what``: random sets or pseudo-concepts)."""
    if not 0.0 < alpha < 1.0:
        raise ConfigurationError(f"alpha must lie in (0, 1), got {alpha}")
    if test not in NULL_TESTS:
        raise ConfigurationError(f"null test must be one of {NULL_TESTS}, got {test!r}")
    needed = required_random_sets(alpha, n_layers, correction, test, direction)
    if n_random < needed:
        per_layer = alpha / max(1, n_layers) if correction != "none" else alpha
        letter = "K" if what == "pseudo-concept" else "N"
        smallest = f"2/({letter}+1) for direction 'either'" if direction == "either" else f"1/({letter}+1)"
        extra = (
            f" (the rank test's smallest p-value is {smallest}, and alpha {alpha} over {n_layers} "
            f"layer(s) with {correction} correction needs it < {per_layer:.4g})"
            if test == "rank"
            else f" (the t-test needs at least 3 {what}s to estimate the null's spread)"
        )
        raise InsufficientDataError(
            f"{n_random} {what}(s) are too few: at least {needed} are needed{extra}"
        )

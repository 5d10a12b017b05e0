"""From per-layer statistics to LayerResults: correction, effect, power, equivalence, the verdict.

The last step of :meth:`TCAV.test`, apart from the data and computation that
produce the statistics, so that the statistical decisions sit in one place
(with :mod:`.statistics` and :mod:`.equivalence`) and can be read without the
engine's caching.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from pytest_tcav.engine.cav import CAV
from pytest_tcav.engine.equivalence import (
    cav_gate_p,
    conditional_equivalence_p,
    detectable_effect,
    effect_size,
    equivalence_p,
    layer_verdict,
    spread_ratio,
    two_sided_p,
)
from pytest_tcav.engine.results import LayerResult
from pytest_tcav.engine.statistics import Correction, Direction, NullComparison, PairScores, adjust_p_values
from pytest_tcav.errors import ConfigurationError


def check_margin(margin: float | None, min_cav_accuracy: float | None) -> None:
    """A margin is a positive number of null SDs; a minimum accuracy lies in [0, 1]."""
    if margin is not None:
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not math.isfinite(margin) \
                or margin <= 0:
            raise ConfigurationError(
                f"margin must be a positive number (in units of the random sets' spread), got {margin!r}"
            )
    if min_cav_accuracy is not None:
        if isinstance(min_cav_accuracy, bool) or not isinstance(min_cav_accuracy, (int, float)) \
                or not 0.0 <= min_cav_accuracy <= 1.0:
            raise ConfigurationError(f"min_cav_accuracy must lie in [0, 1], got {min_cav_accuracy!r}")


def judge_layers(
    layer_names: Sequence[str],
    raw: Sequence[tuple[dict[str, Any], Any, np.ndarray, float]],
    concept_cavs: Sequence[Sequence[CAV]],
    *,
    direction: Direction,
    alpha: float,
    correction: Correction,
    margin: float | None,
    min_cav_accuracy: float | None,
    conditional: bool = False,
) -> list[LayerResult]:
    """One LayerResult per layer from ``(scores, null comparison, null, concept statistic)``.

    Both the significance p-values and the equivalence p-values are corrected
    over the layers with the same method, so a check's claim holds at level
    alpha for the whole call either way.

    ``conditional``: the null is the pseudo-concepts' statistics (``null="pseudo"``).
    Given the library, the concept's statistic is then a fixed number and the
    noise is the ``K`` pseudo-concepts': the equivalence test's standard error is
    their mean's (``sd / sqrt(K)``, the unit estimated from the same ``K``), and the
    detectable effect is the prediction test's on ``K`` values with no spread of
    the concept's own beyond theirs (spread ratio 1).  The CAV gate compares the
    concept's CAV accuracy with the pseudo-concepts' (what "chance" is for random
    data of this size against this library).
    """
    corrected = adjust_p_values([r[1].p_value for r in raw], correction)
    equivalence: list[float | None] = [None] * len(raw)
    equivalence_corrected: list[float | None] = [None] * len(raw)
    if margin is not None:
        values = []
        for scores, _outcome, null, concept_stat in raw:
            null_mean, null_sd = null_spread(null)
            if conditional:
                values.append(conditional_equivalence_p(concept_stat - null_mean, null_sd, len(null), margin,
                                                        direction))
            else:
                values.append(equivalence_p(concept_stat - null_mean, null_sd, scores["concept"].cosine, margin,
                                            direction))
        equivalence = list(values)
        equivalence_corrected = list(adjust_p_values(values, correction))
    results = []
    for k, (name, (scores, outcome, null, concept_stat), p_corr) in enumerate(zip(layer_names, raw, corrected)):
        accs = [c.accuracy for c in concept_cavs[k]]
        measured = measured_fields(name, scores["concept"], concept_stat, null, scores["null_scores"], accs,
                                   outcome, p_corr, alpha)
        null_accs = [float(v) for v in scores["null_accuracies"]]
        cav_p = cav_gate_p(accs, null_accs)
        results.append(
            LayerResult(
                **measured,
                null_cav_accuracies=null_accs,
                effect=effect_size(concept_stat, measured["null_mean"], measured["null_sd"]),
                detectable_effect=detectable_effect(len(null), 1.0 if conditional else
                                                    spread_ratio(measured["concept_statistics"], measured["null_sd"]),
                                                    alpha, len(layer_names), correction, direction),
                cav_p_value=cav_p,
                verdict=layer_verdict(measured["significant"], cav_p, measured["cav_accuracy"], alpha,
                                      min_cav_accuracy, two_sided_p(float(outcome.statistic), len(null))),
                equivalence_p=equivalence[k],
                equivalence_p_corrected=equivalence_corrected[k],
            )
        )
    return results


def null_spread(null: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """The null statistics' mean and standard deviation (0 for a single value)."""
    return float(np.mean(null)), float(np.std(null, ddof=1)) if len(null) > 1 else 0.0


def measured_fields(name: str, concept: PairScores, statistic: float, null: Sequence[float] | np.ndarray,
                    null_scores: Sequence[float] | np.ndarray, accuracies: Sequence[float], outcome: NullComparison,
                    p_corrected: float, alpha: float) -> dict[str, Any]:
    """The LayerResult fields every test measures the same way, absolute or relative.

    ``concept`` holds the concept's scores against each of its CAVs, ``null``
    the null statistics and ``null_scores`` their TCAV scores; what follows
    from them (effect, power, verdict) is the caller's.
    """
    null_mean, null_sd = null_spread(null)
    return {
        "layer": name,
        "score": float(np.mean(concept.sign_count)),
        "magnitude": float(np.mean(concept.magnitude)),
        "statistic": statistic,
        "null_mean": null_mean,
        "null_sd": null_sd,
        "t_statistic": float(outcome.statistic),
        "p_value": float(outcome.p_value),
        "p_value_rank": float(outcome.p_value_rank),
        "p_corrected": float(p_corrected),
        "cav_accuracy": float(np.mean(accuracies)),
        "significant": bool(p_corrected < alpha),
        "concept_scores": [float(v) for v in concept.sign_count],
        "concept_statistics": [float(v) for v in concept.cosine],
        "concept_magnitudes": [float(v) for v in concept.magnitude],
        "cav_accuracies": [float(a) for a in accuracies],
        "null_statistics": [float(v) for v in null],
        "null_scores": [float(v) for v in null_scores],
    }

"""The stability comparison: Welch's test on the per-random-set statistics, and when a layer has moved."""

from __future__ import annotations

import math
import random

import pytest
from scipy import stats

from pytest_tcav.checks.baseline_file import Baseline
from pytest_tcav.checks.stability import RESOLUTION, compare, welch_p
from tests.helpers.results import STATS, layer_result, tcav_result


def test_welch_matches_scipy_and_treats_noise_as_no_change() -> None:
    a, b = [0.21, 0.25, 0.19, 0.23, 0.22], [0.11, 0.16, 0.12, 0.09, 0.15, 0.13]
    p, differs = welch_p(a, b)
    assert differs and p == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-9)
    assert welch_p(a, a) == (1.0, False)
    assert welch_p(a, [v * (1 + 2e-6) for v in a]) == (1.0, False)  # float noise between machines
    assert welch_p([0.3] * 5, [0.3] * 5) == (1.0, False)  # no spread, no change: defined, not NaN
    p, differs = welch_p([0.3] * 5, [0.1] * 5)
    assert differs and p < 1e-6 and not math.isnan(p)


def _welch_p_by_hand(before: list[float], after: list[float]) -> tuple[float, bool]:
    """welch_p as pytest-tcav computed it before it called scipy's ttest_ind_from_stats: the reference."""
    a, b = [float(v) for v in before], [float(v) for v in after]
    na, nb = len(a), len(b)
    mean_a, mean_b = sum(a) / na, sum(b) / nb
    floor = RESOLUTION * max([abs(v) for v in a + b] + [1e-12])
    diff = mean_b - mean_a
    if abs(diff) <= floor:
        return 1.0, False
    var_a = max(sum((v - mean_a) ** 2 for v in a) / (na - 1), floor**2)
    var_b = max(sum((v - mean_b) ** 2 for v in b) / (nb - 1), floor**2)
    se2 = var_a / na + var_b / nb
    dof = se2**2 / ((var_a / na) ** 2 / (na - 1) + (var_b / nb) ** 2 / (nb - 1))
    return float(min(1.0, 2.0 * stats.t.sf(abs(diff / math.sqrt(se2)), dof))), True


def test_welch_gives_the_p_values_of_the_hand_written_test_it_replaced() -> None:
    rng = random.Random(0)
    for _ in range(3000):
        scale = 10 ** rng.uniform(-8, 3)
        na, nb = rng.randint(2, 12), rng.randint(2, 12)
        shift = rng.choice([0.0, 1e-7, 1e-3, 0.1, 1.0, 10.0]) * scale
        spread = rng.choice([0.0, 1e-9, 1e-4, 0.1, 1.0]) * scale
        a = [rng.gauss(scale, spread) for _ in range(na)]
        b = [rng.gauss(scale + shift, spread * rng.choice([0.5, 1.0, 3.0])) for _ in range(nb)]
        if rng.random() < 0.1:
            b = [v * (1 + rng.uniform(-2e-6, 2e-6)) for v in a]  # rounding noise between machines
        p, differs = welch_p(a, b)
        p_ref, differs_ref = _welch_p_by_hand(a, b)
        assert differs == differs_ref
        assert p == pytest.approx(p_ref, rel=1e-9, abs=1e-300), (a, b)


def test_a_layer_moves_on_the_score_tolerance_or_a_significant_shift_of_the_statistic() -> None:
    before = Baseline.from_result(tcav_result(layer_result("a", score=0.90, statistics=STATS),
                                              layer_result("b", score=0.90, statistics=STATS)), "x")
    shifted = [v - 0.1 for v in STATS]
    after = tcav_result(layer_result("a", score=0.85, statistics=STATS),  # within the score tolerance
                        layer_result("b", score=0.85, statistics=shifted))  # the statistic moved
    rows = compare(before, after, tolerance=0.1)
    assert [(r.layer, r.score_moved, r.statistic_moved) for r in rows] == [("a", False, False), ("b", False, True)]
    assert rows[1].p_corrected == pytest.approx(min(1.0, 2 * rows[1].p_value))  # Holm over the 2 layers
    # A smallest change of the statistic that counts; a score tolerance of 0.04 catches the score.
    rows = compare(before, after, tolerance=0.04, statistic_tolerance=0.2)
    assert [(r.score_moved, r.statistic_moved) for r in rows] == [(True, False), (True, False)]
    # Exactly at the tolerance is not beyond it.
    rows = compare(before, tcav_result(layer_result("a", score=0.8, statistics=STATS),
                                       layer_result("b", score=1.0, statistics=STATS)), tolerance=0.1)
    assert not any(r.moved for r in rows)
    # Where the concept is significant neither before nor after, its score is noise: only the test counts.
    quiet = Baseline.from_result(tcav_result(layer_result("a", score=0.2, statistics=STATS, significant=False)), "q")
    (row,) = compare(quiet, tcav_result(layer_result("a", score=0.8, statistics=STATS, significant=False)),
                     tolerance=0.1)
    assert not row.moved
    (row,) = compare(quiet, tcav_result(layer_result("a", score=0.8, statistics=STATS, significant=True)),
                     tolerance=0.1)
    assert row.score_moved

"""The conditional null (``null="pseudo"``): the verdict is the prediction test against the pseudo-concepts,
and everything a verdict says (effect, equivalence, detectable effect, CAV gate) takes them as its null."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pytest_tcav import TCAV, Concept
from pytest_tcav.engine.conditional_null import PseudoLayer, PseudoNull, layers_from_results
from pytest_tcav.engine.equivalence import conditional_equivalence_p, detectable_effect
from pytest_tcav.engine.statistics import compare_to_null
from pytest_tcav.errors import ConfigurationError, InsufficientDataError
from tests.helpers import tiny_model

LAYERS = ["conv", "relu"]


@pytest.fixture(scope="module")
def setup() -> dict[str, object]:
    gen = torch.Generator().manual_seed(3)
    return {
        "engine": TCAV(tiny_model.EdgeNet(), seed=0),
        "randoms": [tiny_model.noise(12, gen) for _ in range(5)],
        "pseudo": [Concept(f"p{k}", tiny_model.noise(12, gen)) for k in range(8)],
        "inputs": tiny_model.stripes(16, gen),
        "horizontal": Concept("horizontal", tiny_model.stripes(12, gen)),
    }


def _test(setup: dict[str, object], concept: object, **kwargs: object):
    engine = setup["engine"]
    assert isinstance(engine, TCAV)
    kwargs.setdefault("random_sets", setup["randoms"])
    return engine.test(concept, target=1, inputs=setup["inputs"], layers=LAYERS, **kwargs)  # type: ignore[arg-type]


def test_the_verdict_is_the_prediction_test_against_the_pseudo_concepts(setup: dict[str, object]) -> None:
    pseudo = setup["pseudo"]
    assert isinstance(pseudo, list)
    each = [_test(setup, p) for p in pseudo]  # each pseudo-concept under the random null
    result = _test(setup, setup["horizontal"], null="pseudo", pseudo_concepts=pseudo, null_test="t")
    assert result.null == "pseudo" and result.null_source == "K = 8 pseudo-concepts" and result.null_test == "t"
    for k, layer in enumerate(result.layers):
        stats = np.array([r.layers[k].statistic for r in each])
        assert layer.null_statistics == list(stats)
        expected = compare_to_null(layer.statistic, stats, "positive", "t")
        assert layer.p_value == expected.p_value and layer.t_statistic == expected.statistic
        assert layer.effect == pytest.approx((layer.statistic - stats.mean()) / stats.std(ddof=1))
        assert layer.null_cav_accuracies == [r.layers[k].cav_accuracy for r in each]
        assert layer.null_scores == [r.layers[k].score for r in each]
        assert layer.detectable_effect == pytest.approx(detectable_effect(8, 1.0, 0.05, 2, "holm", "positive"))
    assert result.layer("relu").significant  # the model relies on horizontal stripes' edge energy by construction
    random = _test(setup, setup["horizontal"])
    assert [r.statistic for r in random.layers] == [r.statistic for r in result.layers]  # same concept numbers
    assert "pseudo mean±sd" in result.table() and "null: K = 8 pseudo-concepts" in result.table()


@pytest.mark.slow  # 16 more checks
def test_a_measured_null_gives_the_same_verdict_as_the_sets(setup: dict[str, object]) -> None:
    pseudo = setup["pseudo"]
    assert isinstance(pseudo, list)
    null = PseudoNull(layers_from_results([_test(setup, p) for p in pseudo]))
    assert _test(setup, setup["horizontal"], null="pseudo", pseudo_concepts=null, null_test="t") == \
        _test(setup, setup["horizontal"], null="pseudo", pseudo_concepts=pseudo, null_test="t")


def test_the_exact_rank_p_value_counts_the_pseudo_concepts_at_least_as_high(setup: dict[str, object]) -> None:
    pseudo = setup["pseudo"]
    assert isinstance(pseudo, list)
    result = _test(setup, setup["horizontal"], null="pseudo", pseudo_concepts=pseudo, null_test="rank",
                   correction="none", alpha=0.2)
    for layer in result.layers:
        higher = sum(v >= layer.statistic for v in layer.null_statistics)
        assert layer.p_value == (1 + higher) / (8 + 1)


@pytest.mark.slow  # 16 more checks
def test_a_concept_is_never_judged_against_itself(setup: dict[str, object]) -> None:
    pseudo = setup["pseudo"]
    assert isinstance(pseudo, list)
    result = _test(setup, pseudo[2], null="pseudo", pseudo_concepts=pseudo, null_test="t")
    assert all(len(layer.null_statistics) == 7 for layer in result.layers)
    assert result.null_source == "K = 7 pseudo-concepts (1 sharing examples with the concept left out)"
    # one shared example is enough to leave a pseudo-concept out
    mixed = Concept("mixed", torch.cat([pseudo[5].examples[:1], setup["horizontal"].examples[1:]]))  # type: ignore[union-attr]
    assert all(len(layer.null_statistics) == 7 for layer in _test(setup, mixed, null="pseudo", null_test="t",
                                                                  pseudo_concepts=pseudo).layers)


def test_bad_requests_get_clear_errors(setup: dict[str, object]) -> None:
    pseudo = setup["pseudo"]
    assert isinstance(pseudo, list)
    with pytest.raises(ConfigurationError, match="needs the pseudo-concepts' statistics"):
        _test(setup, setup["horizontal"], null="pseudo")
    with pytest.raises(ConfigurationError, match="null must be one of"):
        _test(setup, setup["horizontal"], null="conditional")
    with pytest.raises(ConfigurationError, match="relative test"):
        _test(setup, setup["horizontal"], null="pseudo", pseudo_concepts=pseudo, against=pseudo[0],
              random_sets=5)
    # the pseudo null's default test is the exact rank test: 2 layers under Holm need K >= 40 at 0.05
    with pytest.raises(InsufficientDataError, match=r"8 pseudo-concept\(s\) are too few: at least 40"):
        _test(setup, setup["horizontal"], null="pseudo", pseudo_concepts=pseudo)
    with pytest.raises(InsufficientDataError, match=r"at least 80 .* 2/\(K\+1\) for direction 'either'"):
        _test(setup, setup["horizontal"], null="pseudo", pseudo_concepts=pseudo, direction="either")
    with pytest.raises(ConfigurationError, match="has no layer 'relu'"):
        only_conv = PseudoNull({"conv": PseudoLayer((0.1, 0.2, 0.3), (0.5,) * 3, (0.5,) * 3, (0.0, 0.1))})
        _test(setup, setup["horizontal"], null="pseudo", pseudo_concepts=only_conv, null_test="t")


def test_conditional_equivalence_shows_a_null_effect_below_the_margin_with_enough_pseudo_concepts() -> None:
    # a concept exactly at the pseudo-concepts' mean: shown below a margin of 1 SD once K is large enough
    ps = [conditional_equivalence_p(0.0, 1.0, k, 1.0, "either") for k in (5, 10, 40, 160)]
    assert ps == sorted(ps, reverse=True) and ps[-1] < 0.001 < ps[0]
    # at the margin itself it cannot be shown (about one half), and a null without spread shows nothing
    assert conditional_equivalence_p(1.0, 1.0, 40, 1.0, "positive") == pytest.approx(0.5, abs=0.05)
    assert conditional_equivalence_p(0.0, 0.0, 40, 1.0, "positive") == 1.0


def test_the_shift_and_spread_say_where_fresh_random_data_sit() -> None:
    layer = PseudoLayer(statistics=(0.3, 0.5, 0.4), accuracies=(0.5,) * 3, scores=(0.5,) * 3,
                        random_null=(-0.1, 0.0, 0.1))
    assert layer.shift_in_null_sds() == pytest.approx(4.0)
    assert layer.spread_ratio() == pytest.approx(1.0)
    assert PseudoLayer.from_json(layer.to_json()) == layer
    assert math.isinf(PseudoLayer((0.1, 0.2), (0.5,) * 2, (0.5,) * 2, (0.0, 0.0)).shift_in_null_sds())

"""The concept assertions as users meet them: what passes, what fails, and how failures read.

The pytester projects use the hand-wired EdgeNet of ``tiny_model.py``: for
class 1 ("horizontal") horizontal stripes are significant at ``relu``,
vertical stripes are significant in the negative direction, smooth noise is
neither, and at ``conv`` (before the ReLU) no concept is linearly separable.
"""

from __future__ import annotations

import re
import textwrap

import pytest

from pytest_tcav.checks.significance import judge
from pytest_tcav.engine.results import LayerResult, TCAVResult
from tests.helpers.plugin_helpers import INI, make_project

PASSING = """
import pytest
import torch

import tiny_model
from pytest_tcav import (
    Concept, TCAVResult, assert_concept_insignificant, assert_concept_significant,
)


def test_returns_the_result(model):
    result = assert_concept_significant(model, "horizontal", target=1, layers=["relu"])
    assert isinstance(result, TCAVResult)
    assert result.concept == "horizontal" and result.n_random == 5
    assert result.layer("relu").score > 0.9


def test_class_name_target_and_require_any(model):
    assert_concept_significant(model, "horizontal", target="horizontal", layers=["conv", "relu"], require="any")


def test_negative_direction_and_score_range(model):
    assert_concept_significant(model, "vertical", target=1, layers="relu", direction="negative", score=(0.0, 0.1))


def test_insignificant(model):
    assert_concept_insignificant(model, "noisy", target=1, layers=["conv", "relu"])


def test_insignificant_in_one_direction(model):
    assert_concept_insignificant(model, "vertical", target=1, layers="relu", direction="positive")


def test_fixture_shortcuts(tcav, model):
    checks = len(tcav.records)
    assert_concept_significant(model, "horizontal", target=1, layers="relu")
    assert_concept_insignificant(model, "noisy", target=1, layers="relu")
    assert len(tcav.records) == checks + 2  # the assertions' session is the fixture's
    result = tcav.score(model, "noisy", target=1, layers="relu")
    assert not result.any_significant


def test_named_inputs_and_explicit_random_sets(model):
    result = assert_concept_significant(
        model, "horizontal", target=1, layers="relu", inputs="1",
        random_sets=["random_0", "random_1", "data/concepts/random_2"],
    )
    assert result.n_random == 3


def test_tensors_and_a_random_pool(model):
    gen = torch.Generator().manual_seed(11)
    concept = Concept("tensor stripes", tiny_model.stripes(12, gen))
    result = assert_concept_significant(
        model, concept, target=1, layers="relu", inputs=tiny_model.stripes(16, gen),
        random_pool=tiny_model.noise(60, gen), random_sets=6, alpha=0.01, seed=3, batch_size=7,
    )
    assert (result.concept, result.n_random, result.alpha, result.seed) == ("tensor stripes", 6, 0.01, 3)


def test_folder_path_concept(model, pytestconfig):
    folder = pytestconfig.rootpath / "data" / "concepts" / "horizontal"
    assert_concept_significant(model, folder, target=1, layers="relu")
    assert_concept_significant(model, "data/concepts/horizontal", target=1, layers="relu")


def test_integrated_gradients(model):
    result = assert_concept_significant(model, "horizontal", target=1, layers="relu",
                                        method="integrated_gradients", n_steps=3)
    assert result.method == "integrated_gradients(n_steps=3)"
"""


@pytest.mark.slow  # runs pytest
def test_passing_assertions(pytester: pytest.Pytester) -> None:
    make_project(pytester)
    pytester.makepyfile(test_passing=PASSING)
    result = pytester.runpytest()
    result.assert_outcomes(passed=10)


FAILING = """
from pytest_tcav import assert_concept_insignificant, assert_concept_significant


def helper_line():
    pass


def test_not_separable(model):
    helper_line()
    assert_concept_significant(model, "horizontal", target=1, layers=["conv", "relu"])


def test_within_the_noise(model):
    assert_concept_significant(model, "noisy", target=1, layers=["relu"])


def test_wrong_direction(model):
    assert_concept_significant(model, "vertical", target=1, layers="relu")


def test_score_out_of_range(model):
    assert_concept_significant(model, "horizontal", target=1, layers="relu", score=(0.2, 0.8))


def test_relied_upon(model):
    assert_concept_insignificant(model, "horizontal", target="horizontal", layers=["conv", "relu"])


def test_unknown_layer(model):
    assert_concept_significant(model, "horizontal", target=1, layers=["relu", "rleu"])


def test_unknown_concept(model):
    assert_concept_significant(model, "horizontl", target=1, layers="relu")


def test_unknown_class_name(model):
    assert_concept_significant(model, "horizontal", target="horizontel", layers="relu")


def test_bad_require(model):
    assert_concept_significant(model, "horizontal", target=1, layers="relu", require="most")


def test_too_few_random_sets(model):
    assert_concept_significant(model, "horizontal", target=1, layers="relu", random_sets=2)
"""


_RUNS: dict[str, pytest.RunResult] = {}


@pytest.fixture
def failing_run(pytester: pytest.Pytester) -> pytest.RunResult:
    """One run of the failing project, shared by the tests that read its output."""
    if "failing" not in _RUNS:
        make_project(pytester)
        pytester.makepyfile(test_failing=FAILING)
        _RUNS["failing"] = pytester.runpytest()
    return _RUNS["failing"]


def failure_text(result: pytest.RunResult, test: str) -> str:
    """The failure section of one test in a run's output."""
    text = result.stdout.str()
    start = text.index(f"_ {test} _")
    end = text.find("\n____", start + 1)
    summary = text.find("\n==", start + 1)
    stops = [s for s in (end, summary) if s != -1]
    return text[start:min(stops)]


@pytest.mark.slow  # runs pytest
def test_failures_are_counted(failing_run: pytest.RunResult) -> None:
    failing_run.assert_outcomes(failed=10)


@pytest.mark.slow  # runs pytest
def test_failure_puts_the_users_line_on_top_then_table_then_sentence(failing_run: pytest.RunResult) -> None:
    text = failure_text(failing_run, "test_not_separable")
    lines = text.splitlines()
    code = [line for line in lines if line.startswith(">")]
    assert code == ['>       assert_concept_significant(model, "horizontal", target=1, layers=["conv", "relu"])']
    assert "pytest_tcav/" not in text  # no frame from inside the plugin or the engine
    errors = [line[1:].strip() for line in lines if line.startswith("E")]
    assert errors[0] == ("pytest_tcav.ConceptTestFailure: concept 'horizontal' is not significant (positive) "
                         "for target 1 on conv (required: all of 2 layer(s))")
    header = next(k for k, line in enumerate(errors) if line.startswith("layer"))
    assert errors[header].split() == ["layer", "score", "stat", "random", "mean±sd", "t", "p", "p", "corr",
                                      "CAV", "acc", "effect", "detect.", "verdict"]
    assert errors[header + 2].startswith("conv") and errors[header + 2].endswith("inconclusive")
    assert errors[header + 3].startswith("relu") and errors[header + 3].endswith("significant")
    sentence = errors[-1]
    # horizontal stripes at a random phase, as signed edges: the layer cannot tell them from random images
    assert sentence.startswith("Why: On conv the layer cannot tell the concept from random examples, so it can "
                               "show neither that the model uses the concept nor that it does not (mean CAV "
                               "accuracy 0.50")
    assert sentence.endswith("try testing another layer or giving more or cleaner examples.")
    assert sentence.count(".") <= 3 and sentence.endswith(".")
    assert re.search(r"test_failing.py:\d+: ConceptTestFailure", text)


@pytest.mark.slow  # runs pytest
@pytest.mark.parametrize(
    ("test", "headline", "why"),
    [
        ("test_within_the_noise", "concept 'noisy' is not significant (positive) for target 1 on relu",
         "Why: On relu there is no evidence in either direction: its effect"),
        ("test_wrong_direction", "concept 'vertical' is not significant (positive) for target 1 on relu",
         "Why: On relu the concept pushes the target the other way (statistic below the mean of the 5 random "
         "sets for direction 'positive': effect"),
        ("test_score_out_of_range", "concept 'horizontal' is not significant (positive) for target 1 with a "
         "TCAV score in [0.2, 0.8] on relu", "Why: Its TCAV score on relu is 1.00, outside the expected [0.2, 0.8]"),
        ("test_relied_upon", "concept 'horizontal' is significant (positive) for target horizontal (1) on relu; "
         "expected it not to be (required: all of 2 layer(s))", "Why: The model relies on it on relu (corrected p "),
    ],
)
def test_failure_messages(failing_run: pytest.RunResult, test: str, headline: str, why: str) -> None:
    errors = [line[1:].strip() for line in failure_text(failing_run, test).splitlines() if line.startswith("E")]
    assert errors[0].startswith("pytest_tcav.ConceptTestFailure: " + headline)
    assert any(line.startswith("layer") for line in errors)
    assert errors[-1].startswith(why)


@pytest.mark.slow  # runs pytest
@pytest.mark.parametrize(
    ("test", "error"),
    [
        ("test_unknown_layer", "pytest_tcav.errors.LayerError: model EdgeNet has no layer 'rleu'"),
        ("test_unknown_concept", "pytest_tcav.errors.ConceptDataError: no concept 'horizontl' in the concept "
         "library"),
        ("test_unknown_class_name", "pytest_tcav.errors.ConfigurationError: unknown class name 'horizontel'; "
         "did you mean 'horizontal'?"),
        ("test_bad_require", "pytest_tcav.errors.ConfigurationError: require must be 'all' or 'any'"),
        ("test_too_few_random_sets", "pytest_tcav.errors.InsufficientDataError: 2 random set(s) are too few"),
    ],
)
def test_setup_errors_are_reported_on_the_users_line(failing_run: pytest.RunResult, test: str, error: str) -> None:
    text = failure_text(failing_run, test)
    assert len([line for line in text.splitlines() if line.startswith(">")]) == 1
    assert "pytest_tcav/" not in text
    errors = [line[1:].strip() for line in text.splitlines() if line.startswith("E")]
    assert errors[0].startswith(error)


# -- judging, on hand-made results ----------------------------------------------------------


def layer(name: str, *, significant: bool, score: float = 0.9, accuracy: float = 0.9, statistic: float = 0.2,
          p: float = 0.01, p_corrected: float | None = None) -> LayerResult:
    return LayerResult(
        layer=name, score=score, magnitude=0.1, statistic=statistic, null_mean=0.0, null_sd=0.05,
        t_statistic=3.0, p_value=p, p_value_rank=p, p_corrected=p if p_corrected is None else p_corrected,
        cav_accuracy=accuracy, significant=significant,
    )


def result(*layers: LayerResult, direction: str = "positive") -> TCAVResult:
    return TCAVResult(concept="c", target="1", direction=direction, alpha=0.05, correction="holm", null_test="t",
                      method="gradient", n_random=10, n_concept_examples=20, n_inputs=20, seed=0,
                      layers=list(layers))


def test_require_all_and_any() -> None:
    mixed = result(layer("a", significant=True), layer("b", significant=False, p=0.3))
    assert not judge(mixed, "significant", "all", None).passed
    assert judge(mixed, "significant", "any", None).passed
    assert not judge(mixed, "insignificant", "all", None).passed
    assert judge(mixed, "insignificant", "any", None).passed


def test_score_range_applies_to_the_layers_that_count() -> None:
    res = result(layer("a", significant=True, score=0.95), layer("b", significant=True, score=0.6))
    assert judge(res, "significant", "all", (0.5, 1.0)).passed
    assert not judge(res, "significant", "all", (0.9, 1.0)).passed
    assert judge(res, "significant", "any", (0.9, 1.0)).passed


def test_one_sentence_covers_every_cause() -> None:
    res = result(
        layer("low", significant=False, accuracy=0.52, p=0.4),
        layer("back", significant=False, statistic=-0.3, p=0.9),
        layer("corr", significant=False, p=0.03, p_corrected=0.09),
        layer("weak", significant=False, p=0.2),
    )
    judgement = judge(res, "significant", "all", None)
    assert judgement.headline.endswith("on low, back, corr, weak (required: all of 4 layer(s))")
    reason = judgement.reason
    assert reason.startswith("Why: The CAV accuracy on low is only 0.52")
    for part in ("on back the concept pushes the target the other way",
                 "on corr it is significant only before the holm correction over 4 layers",
                 "on weak its effect is within the spread of the 10 random sets",
                 "try a later layer", "direction='negative'", "testing fewer layers or adding random sets",
                 "more random sets (random_sets=...)"):
        assert part in reason
    assert reason.count(". ") == 0 and reason.endswith(".")


def test_an_other_sign_effect_inside_the_noise_is_no_evidence_either_way() -> None:
    """Only an effect beyond the noise 'pushes the target the other way'; one inside it shows nothing."""
    import dataclasses

    inside = dataclasses.replace(layer("inside", significant=False, statistic=-0.02, p=0.6), effect=-0.4,
                                 detectable_effect=2.9)
    beyond = dataclasses.replace(layer("beyond", significant=False, statistic=-0.3, p=0.99), effect=-6.0,
                                 detectable_effect=2.9)
    reason = judge(result(inside, beyond), "significant", "all", None).reason
    assert "on inside there is no evidence in either direction: its effect (-0.40) is inside the noise of the " \
           "10 random sets (detectable effect 2.90)" in reason
    assert "On beyond the concept pushes the target the other way" in reason and "effect -6.00, beyond the noise" \
        in reason
    assert reason.count("direction='negative'") == 1  # the switch is offered for the real effect only
    pseudo = dataclasses.replace(result(dataclasses.replace(inside, null_statistics=[0.0] * 60)), null="pseudo")
    reason = judge(pseudo, "significant", "all", None).reason
    assert "inside the noise of the 60 pseudo-concepts" in reason and "more pseudo-concepts (tcav_pseudo_concepts)" \
        in reason


@pytest.mark.slow  # runs pytest
def test_the_assertions_leave_the_global_random_state_alone_in_a_run(pytester: pytest.Pytester) -> None:
    make_project(pytester, ini=INI.replace("tcav_random_sets = 5", "tcav_random_sets = 4") + "tcav_seed = 3\n")
    pytester.makepyfile(test_rng=textwrap.dedent("""
        import random

        import numpy as np
        import pytest
        import torch
        from pytest_tcav import ConceptTestFailure, assert_concept_insignificant, assert_concept_significant


        @pytest.mark.parametrize("check", ["passes", "fails", "errors"])
        def test_rng(model, check):
            torch.manual_seed(5); np.random.seed(5); random.seed(5)
            states = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
            if check == "passes":
                assert_concept_significant(model, "horizontal", target=1, layers="relu",
                                           method="integrated_gradients")
            elif check == "fails":
                with pytest.raises(ConceptTestFailure):
                    assert_concept_insignificant(model, "horizontal", target=1, layers="relu")
            else:
                with pytest.raises(Exception, match="no layer"):
                    assert_concept_significant(model, "horizontal", target=1, layers="rleu")
            assert torch.equal(torch.get_rng_state(), states[0])
            assert np.array_equal(np.random.get_state()[1], states[1]) and random.getstate() == states[2]
    """))
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=3)

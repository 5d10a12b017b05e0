"""Concept assertions: the two functions a concept test calls, and their failure messages.

A failure should read like a good pytest failure: the user's line on top (every
frame here hides itself from the traceback), then what was measured on each
layer, then one sentence saying why the check failed and what to try.  Errors
in the test's own setup (an unknown layer, a missing concept folder) keep
their :class:`~pytest_tcav.errors.TCAVError` type but lose the engine's
internal frames, since the fix is on the user's line, not inside the engine;
an exception from inside the model keeps the model's frames only
(:mod:`pytest_tcav.checks.raised`).  Either way the check is recorded, as an error.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pytest_tcav.checks import raised, records
from pytest_tcav.checks.calibration import FOLDER, Status, rate_fields
from pytest_tcav.checks.relative import judge_relative
from pytest_tcav.errors import ConceptTestFailure, ConfigurationError, TCAVCalibrationWarning

if TYPE_CHECKING:
    from torch import nn

    from pytest_tcav.engine.examples import ConceptLike
    from pytest_tcav.engine.results import LayerResult, TCAVResult
    from pytest_tcav.session.session import TargetLike, TCAVSession

#: "score" checks only the TCAV score range, whatever the significance (YAML tests' ``score: [low, high]``).
Expectation = Literal["significant", "insignificant", "score"]
Require = Literal["all", "any"]

#: Below this held-out accuracy a CAV barely tells the concept from random examples.
LOW_CAV_ACCURACY = 0.6


def check_concept(
    session: TCAVSession,
    expectation: Expectation,
    model: nn.Module,
    concept: ConceptLike,
    *,
    target: TargetLike,
    layers: Sequence[str] | str,
    require: Require = "all",
    score: tuple[float, float] | None = None,
    direction: str | None = None,
    **knobs: Any,
) -> TCAVResult:
    """Run one concept check on ``session``, record it, and raise on failure."""
    __tracebackhide__ = True
    if direction is None:
        direction = "positive" if expectation == "significant" else "either"
    layer_names = [layers] if isinstance(layers, str) else list(layers)
    entry = records.check_record(concept, target, layer_names, expectation, direction, require)
    if knobs.get("against") is not None:
        against = knobs["against"]
        entry["against"] = [records.describe(v) for v in (against if isinstance(against, (list, tuple))
                                                           else [against])]
    try:
        score_range = _check_score_range(score)
        entry["score_range"] = list(score_range) if score_range is not None else None
        if expectation == "score" and score_range is None:
            raise ConfigurationError("a score expectation needs score=(low, high)")
        if require not in ("all", "any"):
            raise ConfigurationError(f"require must be 'all' or 'any', got {require!r}")
        result = session.score(model, concept, target=target, layers=layer_names, direction=direction, **knobs)
    except Exception as exc:  # any: a check that raised (in the model too) is still in the summary
        raise raised.recorded(session, entry, exc)  # noqa: B904  (the user's frames, not the engine's)
    judgement = judge(result, expectation, require, score_range)
    # every per-layer number (per-random-set ones too), fingerprints and settings: for the reports
    entry = records.with_result(entry, result)
    try:  # measuring a missing calibration runs the model again
        # A relative check's null is relabelings of its own concepts: the random library's calibration says nothing.
        gate = None if result.against else calibration_gate(session, model, result, target, layer_names, direction,
                                                            knobs)
    except Exception as exc:
        raise raised.recorded(session, entry, exc)  # noqa: B904
    if gate is not None and gate.rates:
        entry["calibration"] = rate_fields(gate.rates)
    refused = judgement.passed and gate is not None and gate.state != "ok" and \
        session.config.require_calibration == "fail"
    reason = gate.message if refused and gate is not None else judgement.reason
    session.record(records.finished(entry, "passed" if judgement.passed and not refused else "failed",
                                    None if judgement.passed and not refused else reason))
    if not judgement.passed:
        raise ConceptTestFailure(
            f"{judgement.headline}\n\n{result.table()}\n\n{judgement.reason}", result, judgement.reason
        )
    if refused:
        raise ConceptTestFailure(f"tcav_require_calibration = fail: {reason}\n\n{result.table()}", result, reason)
    return result


def calibration_gate(session: TCAVSession, model: nn.Module, result: TCAVResult, target: TargetLike,
                     layers: list[str], direction: str, knobs: dict[str, Any]) -> Status | None:
    """The check's calibration: looked up when required (warning under ``warn``), or shown when one exists.

    With ``tcav_calibrate``, a missing or stale one is measured first, here, where the model is at hand
    (a pytest-xdist worker measures what its own checks need; the disk cache shares the work).  A check
    that brings its own random sets or pool is not measured: the spare data are defined by the library.
    """
    mode, measure = session.config.require_calibration, session.config.calibrate
    cache_dir = session.config.cache_dir
    if cache_dir is None or (mode == "off" and not measure and not (cache_dir / FOLDER).is_dir()):
        return None
    gate = session.calibration_status(result, target=target, layers=layers, direction=direction, knobs=knobs)
    own_library = not isinstance(knobs.get("random_sets"), (list, tuple)) and knobs.get("random_pool") is None
    if measure and own_library and gate is not None and gate.state in ("missing", "stale"):
        session.calibrate_for(model, result, target=target, layers=layers, direction=direction, knobs=knobs)
        gate = session.calibration_status(result, target=target, layers=layers, direction=direction, knobs=knobs)
    if gate is not None and gate.state != "ok" and mode == "warn":
        warnings.warn(TCAVCalibrationWarning(gate.message), stacklevel=4)
    return gate


def _check_score_range(score: tuple[float, float] | None) -> tuple[float, float] | None:
    if score is None:
        return None
    try:
        low, high = (float(v) for v in score)
    except (TypeError, ValueError):
        raise ConfigurationError(f"score must be a (low, high) pair of numbers, got {score!r}") from None
    if not 0.0 <= low <= high <= 1.0:
        raise ConfigurationError(f"score=(low, high) needs 0 <= low <= high <= 1, got {score!r}")
    return low, high


# -- judging ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Judgement:
    passed: bool
    headline: str
    reason: str


def _in_range(r: LayerResult, score: tuple[float, float] | None) -> bool:
    return score is None or score[0] <= r.score <= score[1]


def _names(layers: Sequence[LayerResult]) -> str:
    return ", ".join(r.layer for r in layers)


def judge(result: TCAVResult, expectation: Expectation, require: Require,
          score: tuple[float, float] | None) -> Judgement:
    """Whether a result meets the expectation, and if not, why, in words."""
    if expectation == "significant":
        ok = [r.significant and _in_range(r, score) for r in result.layers]
    elif expectation == "score":
        ok = [_in_range(r, score) for r in result.layers]
    else:
        ok = [not r.significant and _in_range(r, score) for r in result.layers]
    passed = all(ok) if require == "all" else any(ok)
    if passed:
        return Judgement(True, "", "")
    failing = [r for r, good in zip(result.layers, ok) if not good]
    scope = (f"all of {len(result.layers)} layer(s)" if require == "all"
             else f"at least one of {len(result.layers)} layer(s)")
    in_range = f" with a TCAV score in [{score[0]}, {score[1]}]" if score is not None else ""
    if result.against and expectation != "score":  # relative TCAV: "X raises the target more than Y"
        headline, reason = judge_relative(result, expectation, failing, scope, score)
    elif expectation == "significant":
        headline = (f"concept {result.concept!r} is not significant ({result.direction}) for target "
                    f"{result.target}{in_range} on {_names(failing)} (required: {scope})")
        reason = _why_not_significant(result, failing, score)
    elif expectation == "score":
        assert score is not None
        headline = (f"concept {result.concept!r} has a TCAV score outside [{score[0]}, {score[1]}] for target "
                    f"{result.target} on {_names(failing)} (required: {scope})")
        scores = ", ".join(f"{r.score:.2f}" for r in failing)
        reason = _sentence([f"its TCAV score on {_names(failing)} is {scores}, outside the expected "
                            f"[{score[0]}, {score[1]}] (the fraction of inputs whose target the concept raises, "
                            f"averaged over the {result.n_random} random sets)"],
                           ["checking the expected range, the target and the inputs"])
    else:
        headline = (f"concept {result.concept!r} is significant ({result.direction}) for target "
                    f"{result.target} on {_names(failing)}; expected it not to be (required: {scope})")
        reason = _why_significant(result, failing, score)
    return Judgement(False, headline, reason)


def _against_direction(r: LayerResult, direction: str) -> bool:
    if direction == "positive":
        return r.statistic < r.null_mean
    if direction == "negative":
        return r.statistic > r.null_mean
    return False


def _why_not_significant(result: TCAVResult, failing: list[LayerResult],
                         score: tuple[float, float] | None) -> str:
    """One sentence: the causes seen on the failing layers, then what to try for each."""
    out_of_range = [r for r in failing if r.significant]
    weak = [r for r in failing if not r.significant]
    low_accuracy = [r for r in weak if r.cav_accuracy < LOW_CAV_ACCURACY]
    rest = [r for r in weak if r not in low_accuracy]
    wrong_way = [r for r in rest if _against_direction(r, result.direction)]
    rest = [r for r in rest if r not in wrong_way]
    corrected_away = [r for r in rest if r.p_value < result.alpha]
    rest = [r for r in rest if r not in corrected_away]

    why: list[str] = []
    tries: list[str] = []
    if low_accuracy:
        accs = ", ".join(f"{r.cav_accuracy:.2f}" for r in low_accuracy)
        why.append(f"the CAV accuracy on {_names(low_accuracy)} is only {accs} (below ~{LOW_CAV_ACCURACY}), "
                   "so the concept is not linearly separable from the random sets there")
        tries.append("a later layer or more distinctive concept examples")
    if wrong_way:
        why.append(f"on {_names(wrong_way)} the concept pushes the target the other way "
                   f"(statistic below the random sets' mean for direction {result.direction!r})")
        tries.append("checking the target, or direction='negative' / 'either' if that is expected")
    if corrected_away:
        why.append(f"on {_names(corrected_away)} it is significant only before the {result.correction} "
                   f"correction over {len(result.layers)} layers")
        tries.append("testing fewer layers or adding random sets")
    if rest:
        why.append(f"on {_names(rest)} its effect is within the spread of the {result.n_random} random sets")
        tries.append("more random sets (random_sets=...), more concept examples, or other layers")
    if out_of_range:
        scores = ", ".join(f"{r.score:.2f}" for r in out_of_range)
        assert score is not None
        why.append(f"its TCAV score on {_names(out_of_range)} is {scores}, outside the expected "
                   f"[{score[0]}, {score[1]}]")
        tries.append("checking the expected score range")
    return _sentence(why, tries)


def _why_significant(result: TCAVResult, failing: list[LayerResult],
                     score: tuple[float, float] | None) -> str:
    relied = [r for r in failing if r.significant]
    out_of_range = [r for r in failing if not r.significant]
    why: list[str] = []
    tries: list[str] = []
    if relied:
        ps = ", ".join(f"{r.p_corrected:.2g}" for r in relied)
        why.append(f"the model relies on it on {_names(relied)} (corrected p {ps} < alpha {result.alpha})")
        tries.append("fixing the model if this is an unwanted shortcut (e.g. retrain with the concept "
                     "randomised), using random sets from the same source as the concept images if they "
                     "differ in more than the concept, or assert_concept_significant if the reliance is expected")
    if out_of_range:
        scores = ", ".join(f"{r.score:.2f}" for r in out_of_range)
        assert score is not None
        why.append(f"its TCAV score on {_names(out_of_range)} is {scores}, outside the expected "
                   f"[{score[0]}, {score[1]}]")
        tries.append("checking the expected score range")
    return _sentence(why, tries)


def _sentence(why: list[str], tries: list[str]) -> str:
    text = "; and ".join(why)
    return f"Why: {text[0].upper() + text[1:]}; try {'; or '.join(tries)}."

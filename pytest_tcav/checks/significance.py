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
from typing import TYPE_CHECKING, Literal

from pytest_tcav.checks import raised, records
from pytest_tcav.checks.calibration import FOLDER, Status
from pytest_tcav.checks.pseudo_concepts import calibrate_check, check_status
from pytest_tcav.checks.verdict_messages import (
    judge_relative,
    suspects_line,
    underpowered,
    why_not_significant,
    why_significant,
)
from pytest_tcav.checks.verdict_messages import sentence as _sentence
from pytest_tcav.engine.spec import Require, settled
from pytest_tcav.errors import ConceptTestFailure, ConfigurationError, TCAVCalibrationWarning, TCAVPowerWarning

if TYPE_CHECKING:
    from torch import nn

    from pytest_tcav.engine.results import LayerResult, TCAVResult
    from pytest_tcav.engine.spec import CheckSpec
    from pytest_tcav.session.session import TCAVSession

#: What a concept check expects: "score" checks only the TCAV score range, whatever the significance
#: (YAML tests' ``score: [low, high]``).  (Stability checks are :mod:`pytest_tcav.checks.stability`.)
Expectation = Literal["significant", "insignificant", "score"]


def check_concept(session: TCAVSession, model: nn.Module, spec: CheckSpec) -> TCAVResult:
    """Run one concept check on ``session``, record it, and raise on failure.

    ``spec`` is settled (:func:`~pytest_tcav.engine.spec.settle`): its direction, margin and knobs
    are what the check runs with.
    """
    __tracebackhide__ = True
    expectation: Expectation = spec.expectation  # type: ignore[assignment]  # the callers' (api, YAML items)
    direction, require, score, margin = settled(spec.direction, "direction"), spec.require, spec.score, spec.margin
    layer_names = spec.layer_names
    entry = records.check_record(spec.concept, spec.target, layer_names, expectation, direction, require)
    if spec.against is not None:
        against = spec.against
        entry.against = [records.describe(v) for v in (against if isinstance(against, (list, tuple))
                                                           else [against])]
    try:
        score_range = _check_score_range(score)
        entry.score_range = list(score_range) if score_range is not None else None
        if expectation == "score" and score_range is None:
            raise ConfigurationError("a score expectation needs score=(low, high)")
        if require not in ("all", "any"):
            raise ConfigurationError(f"require must be 'all' or 'any', got {require!r}")
        if margin is not None and expectation != "insignificant":
            raise ConfigurationError("margin= belongs to an insignificance check (the effect shown below it)")
        result = session.measure(model, spec)
    except Exception as exc:  # any: a check that raised (in the model too) is still in the summary
        raise raised.recorded(session, entry, exc)  # noqa: B904  (the user's frames, not the engine's)
    judgement = judge(result, expectation, require, score_range)
    power = underpowered(result, session.config.max_detectable_effect) \
        if judgement.passed and expectation == "insignificant" and result.margin is None else None
    if power is not None:
        entry.power_warning = power
        warnings.warn(TCAVPowerWarning(power), stacklevel=3)
    # every per-layer number (per-random-set ones too), fingerprints and settings: for the reports
    entry = records.with_result(entry, result)
    try:  # measuring a missing calibration runs the model again
        # A relative check's null is relabelings of its own concepts, and a pseudo-concepts' null is calibrated
        # for this library by construction: the random null's measured rate says nothing about either.
        gate = None if result.against or result.null == "pseudo" else calibration_gate(session, model, result, spec)
    except Exception as exc:
        raise raised.recorded(session, entry, exc)  # noqa: B904
    if gate is not None and gate.rates:
        entry.calibration = list(gate.rates)
    refused = judgement.passed and gate is not None and gate.state != "ok" and \
        session.config.require_calibration == "fail"
    reason = gate.message if refused and gate is not None else judgement.reason
    session.record(records.finished(entry, "passed" if judgement.passed and not refused else "failed",
                                    None if judgement.passed and not refused else reason))
    if not judgement.passed:
        suspects = suspects_line(result)  # the examples a person may want to look at (engine/evidence.py)
        raise ConceptTestFailure(
            f"{judgement.headline}\n\n{result.table()}\n\n{judgement.reason}"
            + (f"\n{suspects}" if suspects else ""), result, judgement.reason
        )
    if refused:
        raise ConceptTestFailure(f"tcav_require_calibration = fail: {reason}\n\n{result.table()}", result, reason)
    return result


def calibration_gate(session: TCAVSession, model: nn.Module, result: TCAVResult, spec: CheckSpec) -> Status | None:
    """The check's calibration: looked up when required (warning under ``warn``), or shown when one exists.

    With ``tcav_calibrate``, a missing or stale one is measured first, here, where the model is at hand
    (a pytest-xdist worker measures what its own checks need; the disk cache shares the work), by
    :mod:`pytest_tcav.checks.pseudo_concepts` with the check's own request.  A check that brings its own
    random sets or pool is not measured: the spare data are defined by the library.
    """
    mode, measure = session.config.require_calibration, session.config.calibrate
    cache_dir = session.config.cache_dir
    if cache_dir is None or (mode == "off" and not measure and not (cache_dir / FOLDER).is_dir()):
        return None

    def lookup() -> Status | None:
        return check_status(session, spec, model_fingerprint=result.model_fingerprint,
                            concept_size=result.n_concept_examples)

    gate = lookup()
    own_library = not isinstance(spec.random_sets, (list, tuple)) and spec.random_pool is None
    if measure and own_library and gate is not None and gate.state in ("missing", "stale"):
        calibrate_check(session, model, spec, concept_size=result.n_concept_examples, count=measure)
        gate = lookup()
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


def layer_passes(result: TCAVResult, r: LayerResult, expectation: Expectation,
                 score: tuple[float, float] | None) -> bool:
    """One layer against the expectation; an inconclusive layer shows neither claim."""
    if expectation == "score":
        return _in_range(r, score)
    if r.inconclusive:
        return False
    if expectation == "significant":
        return r.significant and _in_range(r, score)
    if result.margin is not None:
        return result.equivalent(r) and _in_range(r, score)
    return not r.significant and _in_range(r, score)


def judge(result: TCAVResult, expectation: Expectation, require: Require,
          score: tuple[float, float] | None) -> Judgement:
    """Whether a result meets the expectation, and if not, why, in words."""
    ok = [layer_passes(result, r, expectation, score) for r in result.layers]
    passed = all(ok) if require == "all" else any(ok)
    if passed:
        return Judgement(True, "", "")
    failing = [r for r, good in zip(result.layers, ok) if not good]
    scope = (f"all of {len(result.layers)} layer(s)" if require == "all"
             else f"at least one of {len(result.layers)} layer(s)")
    in_range = f" with a TCAV score in [{score[0]}, {score[1]}]" if score is not None else ""
    names = _names(failing)
    if result.against and expectation != "score":  # relative TCAV: "X raises the target more than Y"
        headline, reason = judge_relative(result, expectation, failing, scope, score)
    elif expectation == "significant":
        headline = (f"concept {result.concept!r} is not significant ({result.direction}) for target "
                    f"{result.target}{in_range} on {names} (required: {scope})")
        reason = why_not_significant(result, failing, score)
    elif expectation == "score":
        assert score is not None
        headline = (f"concept {result.concept!r} has a TCAV score outside [{score[0]}, {score[1]}] for target "
                    f"{result.target} on {names} (required: {scope})")
        scores = ", ".join(f"{r.score:.2f}" for r in failing)
        reason = _sentence([f"its TCAV score on {names} is {scores}, outside the expected "
                            f"[{score[0]}, {score[1]}] (the fraction of inputs whose target the concept raises, "
                            f"averaged over the {result.n_random} random sets)"],
                           ["checking the expected range, the target and the inputs"])
    elif result.margin is not None:
        headline = (f"concept {result.concept!r} is not shown to have an effect below the margin "
                    f"{result.margin:g} ({result.direction}) for target {result.target} on {names} "
                    f"(required: {scope})")
        reason = why_significant(result, failing, score)
    else:
        found = [r for r in failing if r.significant and not r.inconclusive]
        what = (f"is significant ({result.direction}) for target {result.target} on {_names(found)}; "
                "expected it not to be" if found else
                f"cannot be shown insignificant ({result.direction}) for target {result.target} on {names}")
        headline = f"concept {result.concept!r} {what} (required: {scope})"
        reason = why_significant(result, failing, score)
    return Judgement(False, headline, reason)

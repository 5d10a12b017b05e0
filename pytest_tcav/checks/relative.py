"""Verdicts and failure messages of relative checks (``against=``): "X raises the target more than Y".

A relative result has no random sets: its null comes from relabelings of the
two concepts' pooled examples (:mod:`pytest_tcav.engine.relative`).  So its
messages speak of the concepts compared and of the relabelings, never of
random sets or of "relying on" a concept: a relative verdict says which of two
concepts moves the target more, not whether either matters on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pytest_tcav.checks.verdict_messages import LOW_CAV_ACCURACY, failure_causes

if TYPE_CHECKING:
    from pytest_tcav.engine.results import LayerResult, TCAVResult


def others(result: TCAVResult) -> str:
    """The concepts compared against, as people read them: 'dotted', or the union 'dotted' + 'plain'."""
    return " + ".join(repr(name) for name in result.against)


def relation(result: TCAVResult, *, holds: bool) -> str:
    """What the direction claims, as a verb phrase: "raises target 1 more than 'dotted'"."""
    target, versus = result.target, others(result)
    if result.direction == "positive":
        return f"raises target {target} more than {versus}" if holds else \
            f"does not raise target {target} more than {versus}"
    if result.direction == "negative":
        return f"raises target {target} less than {versus}" if holds else \
            f"does not raise target {target} less than {versus}"
    return f"moves target {target} differently from {versus}" if holds else \
        f"does not move target {target} differently from {versus}"


def _names(layers: Sequence[LayerResult]) -> str:
    return ", ".join(r.layer for r in layers)


def _sentence(why: list[str], tries: list[str]) -> str:
    text = "; and ".join(why)
    return f"Why: {text[0].upper() + text[1:]}; try {'; or '.join(tries)}."


def judge_relative(result: TCAVResult, expectation: str, failing: list[LayerResult], scope: str,
                   score: tuple[float, float] | None) -> tuple[str, str]:
    """The headline and the reason of a failed relative check (``significant`` or ``insignificant``)."""
    in_range = f" with a relative TCAV score in [{score[0]}, {score[1]}]" if score is not None else ""
    if expectation == "significant":
        headline = (f"concept {result.concept!r} {relation(result, holds=False)}{in_range} on {_names(failing)} "
                    f"(direction {result.direction}; required: {scope})")
        return headline, _why_not(result, failing, score)
    headline = (f"concept {result.concept!r} {relation(result, holds=True)} on {_names(failing)}; expected it "
                f"not to (direction {result.direction}; required: {scope})")
    return headline, _why(result, failing, score)


def _out_of_range(failing: list[LayerResult], score: tuple[float, float] | None) -> str:
    assert score is not None
    scores = ", ".join(f"{r.score:.2f}" for r in failing)
    return (f"its relative TCAV score on {_names(failing)} is {scores}, outside the expected [{score[0]}, "
            f"{score[1]}]")


def _why_not(result: TCAVResult, failing: list[LayerResult], score: tuple[float, float] | None) -> str:
    # a relative test has no CAV gate: no layer of it is inconclusive
    _inconclusive, out_of_range, low, wrong_way, corrected_away, rest = failure_causes(
        failing, result.direction, result.alpha)
    why: list[str] = []
    tries: list[str] = []
    if low:
        accs = ", ".join(f"{r.cav_accuracy:.2f}" for r in low)
        why.append(f"on {_names(low)} the CAVs tell {result.concept!r} from {others(result)} with accuracy only "
                   f"{accs} (below ~{LOW_CAV_ACCURACY}): the layer barely separates the two")
        tries.append("a later layer, or more distinctive examples of each concept")
    if wrong_way:
        opposite = "less" if result.direction == "positive" else "more"
        why.append(f"on {_names(wrong_way)} it raises the target {opposite} than {others(result)} (statistic on "
                   "the other side of the relabelings' mean)")
        tries.append("swapping the concepts, or direction='either' if either order is acceptable")
    if corrected_away:
        why.append(f"on {_names(corrected_away)} the difference is significant only before the "
                   f"{result.correction} correction over {len(result.layers)} layers")
        tries.append("testing fewer layers or more repetitions (random_sets=...)")
    if rest:
        why.append(f"on {_names(rest)} the difference is within the spread of {result.n_random} random "
                   "relabelings of the two concepts' examples")
        tries.append("more examples of each concept, more repetitions (random_sets=...), or other layers")
    if out_of_range:
        why.append(_out_of_range(out_of_range, score))
        tries.append("checking the expected score range")
    return _sentence(why, tries)


def _why(result: TCAVResult, failing: list[LayerResult], score: tuple[float, float] | None) -> str:
    found = [r for r in failing if r.significant]
    out_of_range = [r for r in failing if not r.significant]
    why: list[str] = []
    tries: list[str] = []
    if found:
        ps = ", ".join(f"{r.p_corrected:.2g}" for r in found)
        why.append(f"on {_names(found)} moving towards {result.concept!r} rather than {others(result)} changes "
                   f"the target beyond what {result.n_random} random relabelings of their examples do "
                   f"(corrected p {ps} < alpha {result.alpha})")
        tries.append("checking that the two concepts' examples differ only in the concept (a difference in "
                     "background or source is a difference too), or assert_concept_significant(..., against=...) "
                     "if the difference is expected")
    if out_of_range:
        why.append(_out_of_range(out_of_range, score))
        tries.append("checking the expected score range")
    return _sentence(why, tries)

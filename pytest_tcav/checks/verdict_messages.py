"""The sentences of a failed or underpowered concept check: what was found, its likely cause, what to try.

Messages say what was measured, in the direction it was measured: a concept
whose direction *lowers* the target is not one "the model relies on", and a
layer that cannot tell the concept from random images shows nothing either way.

A relative check (``against=``) has no random sets: its null comes from
relabelings of the two concepts' pooled examples (:mod:`pytest_tcav.engine.relative`).
So its messages speak of the concepts compared and of the relabelings, never of
random sets or of "relying on" a concept: a relative verdict says which of two
concepts moves the target more, not whether either matters on its own.  Both
kinds read the same groups of failing layers (:func:`failure_causes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from pytest_tcav.engine.results import LayerResult, TCAVResult

#: Below this held-out accuracy a CAV barely tells the concept from random examples.
LOW_CAV_ACCURACY = 0.6

INCONCLUSIVE_TRY = "testing another layer or giving more or cleaner examples"


def names(layers: Sequence[LayerResult]) -> str:
    return ", ".join(r.layer for r in layers)


def _null(result: TCAVResult) -> tuple[int, str, str]:
    """The verdict's null: how many members, what they are, and the knob that adds more."""
    if result.null == "pseudo":
        return (len(result.layers[0].null_statistics) if result.layers else 0), "pseudo-concepts", \
            "tcav_pseudo_concepts"
    return result.n_random, "random sets", "random_sets=..."


def null_sets(result: TCAVResult) -> str:
    """What the verdict's null is made of, in words: the random sets, or the pseudo-concepts (``null="pseudo"``)."""
    count, noun, _knob = _null(result)
    return f"the {count} {noun}"


def more_null(result: TCAVResult) -> str:
    """What adds to the null: random sets, or pseudo-concepts."""
    _count, noun, knob = _null(result)
    return f"more {noun} ({knob})"


def sentence(why: list[str], tries: list[str]) -> str:
    text = "; and ".join(why)
    return f"Why: {text[0].upper() + text[1:]}; try {'; or '.join(tries)}."


def _inconclusive(layers: list[LayerResult], claim: str, pseudo: bool = False) -> str:
    accs = ", ".join(f"{r.cav_accuracy:.2f}" for r in layers)
    ps = ", ".join(f"{r.cav_p_value:.2g}" for r in layers)
    chance = "the pseudo-concepts' against the random sets" if pseudo else "the random sets' against each other"
    return (f"on {names(layers)} the layer cannot tell the concept from random examples, so it can show neither "
            f"{claim} (mean CAV accuracy {accs}, no better than {chance}: p {ps}; "
            "nor does the concept move the target differently from them in either direction)")


def against_direction(r: LayerResult, direction: str) -> bool:
    """Whether the layer's effect lies on the other side of the null from what ``direction`` asks."""
    if direction == "positive":
        return r.effect < 0
    if direction == "negative":
        return r.effect > 0
    return False


class FailureCauses(NamedTuple):
    """The failing layers of a check by what explains them, each layer in the first group that fits."""

    inconclusive: list[LayerResult]
    out_of_range: list[LayerResult]  # significant, but the assertion wanted otherwise (or another score)
    low_accuracy: list[LayerResult]
    wrong_way: list[LayerResult]  # the other sign, and beyond the noise (at least the detectable effect)
    no_evidence: list[LayerResult]  # the other sign, inside the noise: no evidence in either direction
    corrected_away: list[LayerResult]  # below alpha before the correction over layers
    rest: list[LayerResult]


def failure_causes(failing: Sequence[LayerResult], direction: str, alpha: float) -> FailureCauses:
    """Sort failing layers by cause; the absolute and the relative messages read the same groups."""
    inconclusive = [r for r in failing if r.inconclusive]
    out_of_range = [r for r in failing if r.significant and not r.inconclusive]
    weak = [r for r in failing if not r.significant and not r.inconclusive]
    low_accuracy = [r for r in weak if r.cav_accuracy < LOW_CAV_ACCURACY]
    rest = [r for r in weak if r not in low_accuracy]
    other_sign = [r for r in rest if against_direction(r, direction)]
    wrong_way = [r for r in other_sign if not abs(r.effect) < r.detectable_effect]
    no_evidence = [r for r in other_sign if r not in wrong_way]
    rest = [r for r in rest if r not in other_sign]
    corrected_away = [r for r in rest if r.p_value < alpha]
    rest = [r for r in rest if r not in corrected_away]
    return FailureCauses(inconclusive, out_of_range, low_accuracy, wrong_way, no_evidence, corrected_away, rest)


def _out_of_range(layers: list[LayerResult], score: tuple[float, float] | None) -> str:
    scores = ", ".join(f"{r.score:.2f}" for r in layers)
    assert score is not None
    return f"its TCAV score on {names(layers)} is {scores}, outside the expected [{score[0]}, {score[1]}]"


def why_not_significant(result: TCAVResult, failing: list[LayerResult],
                        score: tuple[float, float] | None) -> str:
    """One sentence: the causes seen on the failing layers, then what to try for each."""
    inconclusive, out_of_range, low_accuracy, wrong_way, no_evidence, corrected_away, rest = failure_causes(
        failing, result.direction, result.alpha)
    null = null_sets(result)

    why: list[str] = []
    tries: list[str] = []
    if inconclusive:
        why.append(_inconclusive(inconclusive, "that the model uses the concept nor that it does not",
                                 result.null == "pseudo"))
        tries.append(INCONCLUSIVE_TRY)
    if low_accuracy:
        accs = ", ".join(f"{r.cav_accuracy:.2f}" for r in low_accuracy)
        why.append(f"the CAV accuracy on {names(low_accuracy)} is only {accs} (below ~{LOW_CAV_ACCURACY}), "
                   "so the concept is not linearly separable from the random sets there")
        tries.append("a later layer or more distinctive concept examples")
    if wrong_way:
        side = "below" if result.direction == "positive" else "above"
        effects = ", ".join(f"{r.effect:+.2f}" for r in wrong_way)
        why.append(f"on {names(wrong_way)} the concept pushes the target the other way (statistic {side} the "
                   f"mean of {null} for direction {result.direction!r}: effect {effects}, beyond the noise)")
        tries.append("checking the target, or direction='negative' / 'either' if that is expected")
    if no_evidence:
        effects = ", ".join(f"{r.effect:+.2f}" for r in no_evidence)
        detect = ", ".join(f"{r.detectable_effect:.2f}" for r in no_evidence)
        why.append(f"on {names(no_evidence)} there is no evidence in either direction: its effect ({effects}) is "
                   f"inside the noise of {null} (detectable effect {detect})")
        tries.append(f"{more_null(result)}, more concept examples, or other layers")
    if corrected_away:
        why.append(f"on {names(corrected_away)} it is significant only before the {result.correction} "
                   f"correction over {len(result.layers)} layers")
        tries.append(f"testing fewer layers or adding {_null(result)[1]}")
    if rest:
        detect = ", ".join(f"{r.detectable_effect:.2f}" for r in rest)
        why.append(f"on {names(rest)} its effect is within the spread of {null} "
                   f"(effect {', '.join(f'{r.effect:+.2f}' for r in rest)}; detectable effect {detect})")
        tries.append(f"{more_null(result)}, more concept examples, or other layers")
    if out_of_range:
        why.append(_out_of_range(out_of_range, score))
        tries.append("checking the expected score range")
    return sentence(why, tries)


def why_significant(result: TCAVResult, failing: list[LayerResult],
                    score: tuple[float, float] | None) -> str:
    """Why an insignificance check failed: an effect found (which way), no conclusion, or no equivalence shown."""
    inconclusive = [r for r in failing if r.inconclusive]
    found = [r for r in failing if r.significant and not r.inconclusive]
    raises = [r for r in found if r.effect > 0]
    lowers = [r for r in found if r.effect <= 0]
    unshown = [r for r in failing if result.margin is not None and not r.inconclusive and r not in found
               and not result.equivalent(r)]
    out_of_range = [r for r in failing if r not in inconclusive and r not in found and r not in unshown]
    why: list[str] = []
    tries: list[str] = []
    if raises:
        ps = ", ".join(f"{r.p_corrected:.2g}" for r in raises)
        why.append(f"the model relies on it on {names(raises)} (corrected p {ps} < alpha {result.alpha}): "
                   "moving towards the concept raises the target")
        tries.append("fixing the model if this is an unwanted shortcut (e.g. retrain with the concept "
                     "randomised), using random sets from the same source as the concept images if they "
                     "differ in more than the concept, or assert_concept_significant if the reliance is expected")
    if lowers:
        ps = ", ".join(f"{r.p_corrected:.2g}" for r in lowers)
        why.append(f"on {names(lowers)} moving towards the concept lowers the target (corrected p {ps} < alpha "
                   f"{result.alpha}); the usual cause is not a use of the concept but that the concept images "
                   "lack something of the target class that the random images have (texture, colour, "
                   "background)")
        tries.append("random sets drawn from the same source as the concept images (the same backgrounds "
                     "without the concept), or direction='positive' if the claim is that the concept does not "
                     "raise the target")
    if unshown:
        assert result.margin is not None
        detail = ", ".join(f"effect {r.effect:+.2f}, equivalence p {r.equivalence_p_corrected:.2g}"
                           for r in unshown)
        why.append(f"on {names(unshown)} the data do not show its effect below the margin {result.margin:g} "
                   f"at alpha {result.alpha} ({detail})")
        count, noun, _knob = _null(result)
        tries.append(f"more {noun} than {count} {noun} (the margin's uncertainty shrinks with them), or a larger "
                     "margin if a larger effect is acceptable")
    if inconclusive:
        why.append(_inconclusive(inconclusive, "that the model uses the concept nor that it does not",
                                 result.null == "pseudo"))
        tries.append(INCONCLUSIVE_TRY)
    if out_of_range:
        why.append(_out_of_range(out_of_range, score))
        tries.append("checking the expected score range")
    return sentence(why, tries)


def underpowered(result: TCAVResult, limit: float | None) -> str | None:
    """The warning of an insignificance check that could not have found an effect of ``limit``; None if it could."""
    if limit is None:
        return None
    weak = [r for r in result.layers if not r.inconclusive and r.detectable_effect > limit]
    if not weak:
        return None
    from pytest_tcav.engine.equivalence import spread_ratio, suggest_inputs, suggest_random_sets

    worst = max(r.detectable_effect for r in weak)
    pseudo = result.null == "pseudo"
    # under the pseudo-concepts' null the concept adds no spread of its own (engine/layer_verdicts.py)
    needed = [suggest_random_sets(limit, len(r.null_statistics) if pseudo else result.n_random,
                                  1.0 if pseudo else spread_ratio(r.concept_statistics, r.null_sd),
                                  result.alpha, len(result.layers), result.correction, result.direction)
              for r in weak]
    what = "pseudo-concepts" if pseudo else "random sets"
    head = (f"concept {result.concept!r} for target {result.target}: this check could not have detected an "
            f"effect below {worst:.2f} (on {names(weak)}; 80% power at alpha {result.alpha}, {result.correction} "
            f"over {len(result.layers)} layer(s); effects in units of the {what}' spread)")
    if any(n is None for n in needed):
        tail = (f"no number of {what} would bring it under tcav_max_detectable_effect = {limit:g} at this "
                "alpha and number of layers; test fewer layers, or state the claim with margin=")
    elif pseudo:
        tail = (f"with tcav_pseudo_concepts = {max(n for n in needed if n is not None)} it would (limit "
                f"tcav_max_detectable_effect = {limit:g}); or state the claim with margin=")
    else:
        n_sets = max(n for n in needed if n is not None)
        tail = (f"with {n_sets} random sets and {suggest_inputs(result.n_inputs)} inputs it would (limit "
                f"tcav_max_detectable_effect = {limit:g}); or state the claim with margin=")
    return f"{head}; {tail}"


# -- relative checks (against=): "X raises the target more than Y" ------------------------------
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


def judge_relative(result: TCAVResult, expectation: str, failing: list[LayerResult], scope: str,
                   score: tuple[float, float] | None) -> tuple[str, str]:
    """The headline and the reason of a failed relative check (``significant`` or ``insignificant``)."""
    in_range = f" with a relative TCAV score in [{score[0]}, {score[1]}]" if score is not None else ""
    if expectation == "significant":
        headline = (f"concept {result.concept!r} {relation(result, holds=False)}{in_range} on {names(failing)} "
                    f"(direction {result.direction}; required: {scope})")
        return headline, _why_relative_fails(result, failing, score)
    headline = (f"concept {result.concept!r} {relation(result, holds=True)} on {names(failing)}; expected it "
                f"not to (direction {result.direction}; required: {scope})")
    return headline, _why_relative_holds(result, failing, score)


def _relative_out_of_range(failing: list[LayerResult], score: tuple[float, float] | None) -> str:
    assert score is not None
    scores = ", ".join(f"{r.score:.2f}" for r in failing)
    return (f"its relative TCAV score on {names(failing)} is {scores}, outside the expected [{score[0]}, "
            f"{score[1]}]")


def _why_relative_fails(result: TCAVResult, failing: list[LayerResult], score: tuple[float, float] | None) -> str:
    # a relative test has no CAV gate: no layer of it is inconclusive
    _inconclusive, out_of_range, low, wrong_way, no_evidence, corrected_away, rest = failure_causes(
        failing, result.direction, result.alpha)
    why: list[str] = []
    tries: list[str] = []
    if low:
        accs = ", ".join(f"{r.cav_accuracy:.2f}" for r in low)
        why.append(f"on {names(low)} the CAVs tell {result.concept!r} from {others(result)} with accuracy only "
                   f"{accs} (below ~{LOW_CAV_ACCURACY}): the layer barely separates the two")
        tries.append("a later layer, or more distinctive examples of each concept")
    if wrong_way:
        opposite = "less" if result.direction == "positive" else "more"
        why.append(f"on {names(wrong_way)} it raises the target {opposite} than {others(result)} (statistic on "
                   "the other side of the relabelings' mean)")
        tries.append("swapping the concepts, or direction='either' if either order is acceptable")
    if no_evidence:
        why.append(f"on {names(no_evidence)} there is no evidence in either direction: the difference is inside "
                   f"the noise of {result.n_random} random relabelings of the two concepts' examples")
        tries.append("more examples of each concept, more repetitions (random_sets=...), or other layers")
    if corrected_away:
        why.append(f"on {names(corrected_away)} the difference is significant only before the "
                   f"{result.correction} correction over {len(result.layers)} layers")
        tries.append("testing fewer layers or more repetitions (random_sets=...)")
    if rest:
        why.append(f"on {names(rest)} the difference is within the spread of {result.n_random} random "
                   "relabelings of the two concepts' examples")
        tries.append("more examples of each concept, more repetitions (random_sets=...), or other layers")
    if out_of_range:
        why.append(_relative_out_of_range(out_of_range, score))
        tries.append("checking the expected score range")
    return sentence(why, tries)


def _why_relative_holds(result: TCAVResult, failing: list[LayerResult], score: tuple[float, float] | None) -> str:
    found = [r for r in failing if r.significant]
    out_of_range = [r for r in failing if not r.significant]
    why: list[str] = []
    tries: list[str] = []
    if found:
        ps = ", ".join(f"{r.p_corrected:.2g}" for r in found)
        why.append(f"on {names(found)} moving towards {result.concept!r} rather than {others(result)} changes "
                   f"the target beyond what {result.n_random} random relabelings of their examples do "
                   f"(corrected p {ps} < alpha {result.alpha})")
        tries.append("checking that the two concepts' examples differ only in the concept (a difference in "
                     "background or source is a difference too), or assert_concept_significant(..., against=...) "
                     "if the difference is expected")
    if out_of_range:
        why.append(_relative_out_of_range(out_of_range, score))
        tries.append("checking the expected score range")
    return sentence(why, tries)


#: Ids a suspects line names per group before "and N more".
SUSPECTS_SHOWN = 5


def _listed(ids: list[str]) -> str:
    unique = list(dict.fromkeys(ids))
    more = f" and {len(unique) - SUSPECTS_SHOWN} more" if len(unique) > SUSPECTS_SHOWN else ""
    return ", ".join(unique[:SUSPECTS_SHOWN]) + more


def suspects_line(result: TCAVResult) -> str | None:
    """One line naming the layers' suspect examples (engine/evidence.py), or None when there are none.

    "3 concept examples look random to the model on layer4: a.png, b.png, c.png; random_3 holds 4
    examples that look like the concept on layer4: ..." (docs/reading-failures.md).
    """
    parts: list[str] = []
    for r in result.layers:
        concept = [s["id"] for s in r.suspects if s.get("kind") == "concept"]
        if concept:
            count = len(dict.fromkeys(concept))
            parts.append(f"{count} concept example{'s' if count != 1 else ''} look{'s' if count == 1 else ''} "
                         f"random to the model on {r.layer}: {_listed(concept)}")
        by_set: dict[str, list[str]] = {}
        for s in r.suspects:
            if s.get("kind") == "random":
                by_set.setdefault(str(s.get("set")), []).append(str(s["id"]))
        for name, ids in by_set.items():
            count = len(dict.fromkeys(ids))
            parts.append(f"{name} holds {count} example{'s' if count != 1 else ''} that look{'s' if count == 1 else ''}"
                         f" like the concept on {r.layer}: {_listed(ids)}")
    return "Suspect examples: " + "; ".join(parts) + "." if parts else None

"""The conditional null (``null="pseudo"``): a concept judged against pseudo-concepts tested on the same library.

Why.  The ``random`` null judges a concept against the spread of the library's
own random sets, which is calibrated on average over libraries; one library a
user fixed can be atypical of their random data (its sets a little brighter,
say), and then every check of the suite is biased the same way.  A
pseudo-concept is a set of random data the tests do not use, of the concept's
size, tested against the *same* library through the same model, layers, inputs
and settings.  Given the library, a concept the model does not rely on is one
more such draw: the concept's statistic and the ``K`` pseudo-concepts'
statistics are exchangeable, whatever the library's luck.  So

* the exact rank p-value ``(1 + #{pseudo >= concept}) / (K + 1)`` is valid
  given the library, but never below ``1 / (K + 1)``;
* the smooth one treats the pseudo-concepts' statistics as a sample of a
  location-scale family and the concept as one more draw: the prediction
  interval ``(x - mean) / (sd * sqrt(1 + 1/K))`` on ``K - 1`` degrees of freedom
  (:func:`~pytest_tcav.engine.statistics.compare_to_null`, the same test the
  ``random`` null uses on its leave-one-out values).

docs/statistics.md ("The conditional null") derives both and gives the measured
rates per library.  The effect, the equivalence test, the detectable effect and
the CAV gate take the pseudo-concepts in place of the random sets
(:mod:`pytest_tcav.engine.layer_verdicts`): effects are then in units of the
pseudo-concepts' spread.

This module holds the measured null (:class:`PseudoNull`) and how it is built
from results; where the pseudo-concepts come from and where the null is kept is
the session's (:mod:`pytest_tcav.session.pseudo_null`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pytest_tcav.errors import ConfigurationError

if TYPE_CHECKING:
    from pytest_tcav.engine.examples import Concept
    from pytest_tcav.engine.results import TCAVResult

#: Values of ``null=`` / ``tcav_null``.
NULLS = ("random", "pseudo")
#: Bytes of an example's content hash that identify it here and in stored nulls (64 bits: no chance collision).
DIGEST_BYTES = 8


@dataclass(frozen=True)
class PseudoLayer:
    """One layer's measurement over the ``K`` pseudo-concepts (one value per pseudo-concept, in draw order).

    ``random_null`` is the library's own leave-one-out null on the layer (one
    value per random set): the same for every pseudo-concept, kept so that the
    ``random`` null's verdict on each pseudo-concept, in any direction, can be
    recomputed (what ``pytest-tcav calibrate`` counts).
    """

    statistics: tuple[float, ...]
    accuracies: tuple[float, ...]
    scores: tuple[float, ...]
    random_null: tuple[float, ...]

    def without(self, drop: frozenset[int]) -> PseudoLayer:
        keep = [k for k in range(len(self.statistics)) if k not in drop]
        return PseudoLayer(tuple(self.statistics[k] for k in keep), tuple(self.accuracies[k] for k in keep),
                           tuple(self.scores[k] for k in keep), self.random_null)

    def shift_in_null_sds(self) -> float:
        """How far the pseudo-concepts' mean statistic lies from the random null's mean, in random-null SDs.

        Near 0 on a library typical of the random data; ``+0.9`` reads "fresh
        random data score 0.9 null SDs above your random sets".
        """
        null = np.asarray(self.random_null, dtype=np.float64)
        sd = float(null.std(ddof=1)) if len(null) > 1 else 0.0
        diff = float(np.mean(self.statistics)) - float(null.mean())
        if sd <= 0.0:
            return 0.0 if diff == 0.0 else float(np.copysign(np.inf, diff))
        return diff / sd

    def spread_ratio(self) -> float:
        """The pseudo-concepts' standard deviation over the random null's: about 1 when the random sets'
        spread is the spread of fresh random data against them."""
        null_sd = float(np.std(self.random_null, ddof=1)) if len(self.random_null) > 1 else 0.0
        sd = float(np.std(self.statistics, ddof=1)) if len(self.statistics) > 1 else 0.0
        return sd / null_sd if null_sd > 0.0 else float("inf") if sd > 0.0 else 1.0

    def to_json(self) -> dict[str, list[float]]:
        return {"statistics": list(self.statistics), "accuracies": list(self.accuracies),
                "scores": list(self.scores), "random_null": list(self.random_null)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PseudoLayer:
        return cls(*(tuple(float(v) for v in data[key]) for key in ("statistics", "accuracies", "scores",
                                                                     "random_null")))


@dataclass(frozen=True)
class PseudoNull:
    """The pseudo-concepts' statistics per layer, and where they came from (shown with every verdict)."""

    layers: Mapping[str, PseudoLayer]
    #: Content fingerprint of each pseudo-concept, in draw order (a concept is never judged against itself).
    members: tuple[str, ...] = ()
    #: The measurement's identity: library, model, inputs and pseudo-concepts' fingerprints (shortened in reports).
    fingerprint: str = ""
    #: When it was measured (ISO 8601, UTC); empty for a null built in memory by the engine.
    measured_at: str = ""
    #: Where the pseudo-concepts' data came from, in words.
    source: str = ""
    #: Pseudo-concepts left out of this verdict because they share examples with the concept under test.
    excluded: int = 0
    #: Each pseudo-concept's :func:`example_keys`.
    member_digests: tuple[frozenset[bytes], ...] = field(default=(), compare=False, repr=False)

    @property
    def k(self) -> int:
        first = next(iter(self.layers.values()), None)
        return 0 if first is None else len(first.statistics)

    def layer(self, name: str) -> PseudoLayer:
        try:
            return self.layers[name]
        except KeyError:
            raise ConfigurationError(
                f"the pseudo-concepts' null has no layer {name!r} (it covers {', '.join(self.layers)}): "
                "measure it with the check's layers") from None

    def describe(self) -> str:
        """One line for reports: ``K = 60 pseudo-concepts (pseudo_null/1a2b3c4d, measured 2026-12-07 14:50 UTC)``:
        the stored measurement's file under the disk cache (its name begins with these 8 characters)."""
        parts = []
        if self.fingerprint:
            parts.append(f"pseudo_null/{self.fingerprint[:8]}")
        if self.measured_at:
            parts.append(f"measured {self.measured_at.replace('T', ' ')[:16]} UTC")
        if self.excluded:
            parts.append(f"{self.excluded} sharing examples with the concept left out")
        detail = f" ({', '.join(parts)})" if parts else ""
        return f"K = {self.k} pseudo-concepts{detail}"

    def excluding(self, concept: Concept) -> PseudoNull:
        """This null without the pseudo-concepts that are, or share an example with, the concept under test."""
        drop = {k for k, fp in enumerate(self.members) if fp == concept.fingerprint}
        if self.member_digests:
            keys = example_keys(concept)
            drop |= {k for k, digests in enumerate(self.member_digests) if digests & keys}
        if not drop:
            return self
        frozen = frozenset(drop)
        return PseudoNull({name: layer.without(frozen) for name, layer in self.layers.items()},
                          tuple(m for k, m in enumerate(self.members) if k not in frozen), self.fingerprint,
                          self.measured_at, self.source, self.excluded + len(frozen),
                          tuple(d for k, d in enumerate(self.member_digests) if k not in frozen))


def example_keys(concept: Concept) -> frozenset[bytes]:
    """What identifies a set's examples when pseudo-concepts are left out for sharing them with the concept:
    each image's content hash, or each sentence (text is tokenized per set, so its token rows differ with
    the set's padding while the sentence does not); :data:`DIGEST_BYTES` bytes of each."""
    if concept.texts is not None:
        return frozenset(hashlib.sha256(f"text:{t}".encode()).digest()[:DIGEST_BYTES] for t in concept.texts)
    return frozenset(d[:DIGEST_BYTES] for d in concept.example_digests)


def layers_from_results(results: Sequence[TCAVResult]) -> dict[str, PseudoLayer]:
    """Each layer's pseudo-concept statistics from the pseudo-concepts' results under the ``random`` null."""
    if not results:
        raise ConfigurationError("the pseudo-concepts' null needs at least one pseudo-concept")
    names = [layer.layer for layer in results[0].layers]
    out = {}
    for k, name in enumerate(names):
        rows = [result.layers[k] for result in results]
        out[name] = PseudoLayer(tuple(r.statistic for r in rows), tuple(r.cav_accuracy for r in rows),
                                tuple(r.score for r in rows), tuple(rows[0].null_statistics))
    return out


def require_pseudo_null(pseudo: PseudoNull | None, layers: Sequence[str]) -> PseudoNull:
    """The request's pseudo-concepts' null, covering every layer asked for; a clear error when it is not there."""
    if pseudo is None:
        raise ConfigurationError(
            "null='pseudo' needs the pseudo-concepts' statistics: give TCAV.test pseudo_concepts= (random data "
            "the tests do not use, each of the concept's size), or run the check through pytest-tcav, which "
            "measures them from the library's spare random data")
    for name in layers:
        pseudo.layer(name)
    return pseudo


#: The p-value each null uses unless a check names one (``null_test=``): the prediction t-test against the
#: random sets' spread (docs/statistics.md, "The test"); the exact rank test against the pseudo-concepts,
#: whose statistics were measured skewed on an atypical library, where the t-test ran at 9-19% for 5%
#: ("The conditional null").
DEFAULT_NULL_TESTS = {"random": "t", "pseudo": "rank"}


def resolve_null_test(null_test: str | None, null: str) -> Any:
    """The check's ``null_test``, else its null's default (:data:`DEFAULT_NULL_TESTS`)."""
    return null_test if null_test is not None else DEFAULT_NULL_TESTS[null]


def check_null(null: str) -> None:
    if null not in NULLS:
        raise ConfigurationError(f"null must be one of {NULLS}, got {null!r}")

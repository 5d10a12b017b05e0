"""Evidence per example: which inputs carry the score, which examples look misplaced, the concept's direction.

Three things a person can look at besides the layer's numbers, computed from
what the test already has (the concept's CAVs, the inputs' gradients, the
sets' activations), none of them changing a number of the test:

* per input, its share of the concept's CAVs along which its target gradient
  points, and its mean cosine with them (:class:`~.statistics.PairScores`
  ``input_share`` / ``input_cosine``; the layer's score and statistic are
  their means);
* suspect examples (:func:`suspects`): concept examples that the concept's
  own CAVs, where they were held out, put among the random examples, and
  random examples that those CAVs put among the concept's;
* the concept's direction (:func:`cav_direction`): its mean unit CAV, sketched
  to :data:`~.results.SKETCH_DIM` numbers when the layer is wider, so that a
  report can compare concepts at a layer (:func:`~.results.concept_cosine`).

Held out.  Every trainer draws its split with
:func:`~.cav.balanced_split`, first thing, from the CAV's seed
(:func:`~.fingerprints.pair_seed` of the two sets in canonical order), so the
split of each concept CAV is drawn again here and only its held-out examples
are judged by it.  A random example of set r is never seen by the CAVs of the
concept against the other random sets: all of those are held out for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pytest_tcav.engine.cav import CAV, CAVTrainer, balanced_split
from pytest_tcav.engine.examples import Concept
from pytest_tcav.engine.fingerprints import pair_seed
from pytest_tcav.engine.results import SKETCH_DIM

#: A concept example is suspect when at least this share of the concept CAVs that held it out put it among
#: the random examples; a random example when at least RANDOM_THRESHOLD of its held-out CAVs put it among the
#: concept's.  A concept example is held out by a third of its CAVs (3 of 10), a random example by nearly all
#: (9 of 10): the thresholds differ with that.  docs/statistics.md ("Suspect examples") gives the measurements.
CONCEPT_THRESHOLD = 0.5
RANDOM_THRESHOLD = 0.75
#: ... and at least this many CAVs held it out.
MIN_HELD_OUT = {"concept": 1, "random": 2}
#: No example is flagged on a layer whose concept CAVs' mean held-out accuracy is below this: where the CAVs
#: cannot tell the concept from random examples, their placements are noise (benchmarks/suspects.py: an early
#: layer flags a third of the clean examples).
MIN_CAV_ACCURACY = 0.75
#: The seed of the sketch's hashes: fixed, so that every check's sketch of a layer uses the same ones.
SKETCH_SEED = 0x7CA5


@dataclass(frozen=True)
class Misplaced:
    """Per example of one set: how many CAVs held it out, and how many of those put it on the other side."""

    held_out: np.ndarray  # int, per example
    other_side: np.ndarray  # int, per example

    @property
    def scores(self) -> np.ndarray:
        """The share of held-out CAVs that misplace each example (NaN: none held it out)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.held_out > 0, self.other_side / np.maximum(self.held_out, 1), np.nan)


def _trained_rows(trainer: Any, seed: int, concept: Concept, r: Concept) -> tuple[np.ndarray, np.ndarray] | None:
    """The concept's and random set ``r``'s examples that the CAV of the two was trained on.

    None when the trainer does not draw the common split (a trainer that is not a
    :class:`~.cav.CAVTrainer` with a ``test_fraction``): nothing is known held out.
    """
    fraction = getattr(trainer, "test_fraction", None)
    if not isinstance(trainer, CAVTrainer) or not isinstance(fraction, float):
        return None
    flip = concept.fingerprint > r.fingerprint  # the CAV's canonical order (work_units.cav_key)
    first, second = (r, concept) if flip else (concept, r)
    split = balanced_split(len(first), len(second), fraction,
                           np.random.default_rng(pair_seed(seed, first.fingerprint, second.fingerprint)))

    def rows(offset: int, n: int) -> np.ndarray:
        return split.train[(split.train >= offset) & (split.train < offset + n)] - offset

    return rows(len(r) if flip else 0, len(concept)), rows(0 if flip else len(concept), len(r))


def decision_values(activations: torch.Tensor, cavs: tuple[torch.Tensor, np.ndarray]) -> np.ndarray:
    """``x . w + b`` of every example (rows) under every CAV (columns), in float64; ``cavs`` as :func:`stacked`
    gives them (stacked once per layer, not once per set)."""
    weights, intercepts = cavs
    return (activations.double() @ weights.T).numpy() + intercepts[None, :]


def stacked(cavs: Sequence[CAV]) -> tuple[torch.Tensor, np.ndarray]:
    """The CAVs' weights as one float64 matrix (a row each) and their intercepts."""
    return torch.stack([c.weights for c in cavs]).double(), np.array([c.intercept for c in cavs])


def placements(fetch: Callable[[int], dict[str, torch.Tensor]], layers: Sequence[str], concept: Concept,
               randoms: Sequence[Concept], cavs: dict[str, Sequence[CAV]], trainer: Any,
               seed: int) -> dict[str, tuple[Misplaced, list[Misplaced]]]:
    """Held-out placements of the concept's examples and of each random set's, by the concept's CAVs, per layer.

    ``fetch(0)`` gives the concept's activations at every layer, ``fetch(j)``
    random set j's (from 1): one set at a time is held.  ``cavs[layer][j - 1]``
    is the concept against random set j, pointing towards the concept.  A
    concept example is misplaced by a CAV that puts it on the random side
    (``x . w + b <= 0``); a random example by one that puts it on the
    concept's (``> 0``).
    """
    trained = [_trained_rows(trainer, seed, concept, r) for r in randoms]
    by_layer = {name: stacked(cavs[name]) for name in layers}
    acts = fetch(0)
    concept_side: dict[str, Misplaced] = {}
    for name in layers:
        values = decision_values(acts[name], by_layer[name])  # concept examples x CAVs
        held = np.ones_like(values, dtype=bool)
        for j, rows in enumerate(trained):
            held[:, j] = rows is not None  # a split not known: nothing counts as held out
            if rows is not None:
                held[rows[0], j] = False
        concept_side[name] = Misplaced(held.sum(1), ((values <= 0) & held).sum(1))
    per_random: dict[str, list[Misplaced]] = {name: [] for name in layers}
    for j, rows in enumerate(trained):
        acts = fetch(j + 1)
        for name in layers:
            values = decision_values(acts[name], by_layer[name])  # set j's examples x CAVs
            held = np.ones_like(values, dtype=bool)
            if rows is None:
                held[:, j] = False  # its own CAV trained on it, on examples not known
            else:
                held[rows[1], j] = False
            per_random[name].append(Misplaced(held.sum(1), ((values > 0) & held).sum(1)))
        del acts
    return {name: (concept_side[name], per_random[name]) for name in layers}


def flagged(placement: Misplaced, kind: str = "concept", *, threshold: float | None = None,
            min_held_out: int | None = None) -> list[int]:
    """The examples of a set of ``kind`` ("concept" or "random") that are suspect (see the thresholds above)."""
    if threshold is None:
        threshold = CONCEPT_THRESHOLD if kind == "concept" else RANDOM_THRESHOLD
    if min_held_out is None:
        min_held_out = MIN_HELD_OUT[kind]
    scores = placement.scores
    keep = (placement.held_out >= min_held_out) & (np.nan_to_num(scores, nan=-1.0) >= threshold)
    return [int(k) for k in np.flatnonzero(keep)]


def suspects(concept: Concept, randoms: Sequence[Concept], concept_side: Misplaced,
             per_random: Sequence[Misplaced], cav_accuracy: float) -> list[dict[str, Any]]:
    """The flagged examples as a result stores them, most suspect first (then concept first, set, index)."""
    if not cav_accuracy >= MIN_CAV_ACCURACY:
        return []
    out: list[dict[str, Any]] = []
    for set_index, (s, placement) in enumerate([(concept, concept_side), *zip(randoms, per_random)]):
        scores = placement.scores
        kind = "concept" if set_index == 0 else "random"
        for k in flagged(placement, kind):
            out.append({"kind": kind, "set": s.name, "set_index": set_index, "index": k, "id": s.example_id(k),
                        "score": float(scores[k]), "held_out": int(placement.held_out[k])})
    out.sort(key=lambda d: (-d["score"], d["set_index"], d["index"]))
    return out


def cav_direction(cavs: Sequence[CAV]) -> tuple[list[float], int]:
    """The concept's mean unit CAV (rounded to 8 decimals), sketched when wider than SKETCH_DIM; and the width.

    The sketch hashes each feature to one of SKETCH_DIM buckets with a seeded
    sign (the same hashes for every check at a width), which keeps inner
    products in expectation; :func:`~.results.concept_cosine` documents its error.
    """
    weights = torch.stack([c.weights for c in cavs]).double()
    norms = weights.norm(dim=1, keepdim=True)
    units = torch.where(norms > 0, weights / norms.clamp_min(1e-300), torch.zeros_like(weights))
    mean = units.mean(0).numpy()
    width = int(mean.shape[0])
    if width > SKETCH_DIM:
        gen = np.random.default_rng(SKETCH_SEED)
        bucket = gen.integers(0, SKETCH_DIM, width)
        sign = gen.integers(0, 2, width) * 2.0 - 1.0
        mean = np.bincount(bucket, weights=sign * mean, minlength=SKETCH_DIM)
    return [round(float(v), 8) for v in mean], width

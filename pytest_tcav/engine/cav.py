"""Concept activation vectors: the linear direction that separates two example sets.

A trainer turns activations of a positive and a negative set into a
:class:`CAV`.  The split into training and held-out examples (balanced, seeded)
is common to every trainer, so that accuracies are comparable between them;
it lives here with the :class:`CAVTrainer` interface, and the trainers
themselves in :mod:`pytest_tcav.engine.trainers`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pytest_tcav.errors import ConfigurationError, InsufficientDataError

MIN_EXAMPLES_PER_SET = 5


@dataclass(frozen=True)
class CAV:
    """A separating direction pointing from the negative towards the positive set."""

    weights: torch.Tensor  # (features,), float32
    intercept: float
    accuracy: float  # held-out accuracy of the linear classifier

    def flipped(self) -> CAV:
        """The same boundary seen from the other set."""
        return CAV(-self.weights, -self.intercept, self.accuracy)


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # indices into the stacked (positive, negative) examples
    test: np.ndarray
    labels: np.ndarray  # +1 positive, -1 negative, for the stacked examples


def balanced_split(n_pos: int, n_neg: int, test_fraction: float, rng: np.random.Generator) -> Split:
    """Equal numbers of each class, ``ceil(test_fraction * n)`` of each held out.

    Indices refer to the concatenation ``[positive examples, negative examples]``.
    """
    n = min(n_pos, n_neg)
    if n < MIN_EXAMPLES_PER_SET:
        raise InsufficientDataError(
            f"a CAV needs at least {MIN_EXAMPLES_PER_SET} examples in each set to hold some out "
            f"for its accuracy; got {n_pos} and {n_neg}"
        )
    if not 0.0 < test_fraction < 1.0:
        raise ConfigurationError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    n_test = max(1, math.ceil(test_fraction * n))
    if n - n_test < 1:
        raise InsufficientDataError(f"test_fraction {test_fraction} leaves no training example")
    pos = rng.permutation(n_pos)[:n]
    neg = n_pos + rng.permutation(n_neg)[:n]
    train = np.concatenate([pos[n_test:], neg[n_test:]])
    test = np.concatenate([pos[:n_test], neg[:n_test]])
    labels = np.concatenate([np.ones(n_pos), -np.ones(n_neg)])
    return Split(train=train, test=test, labels=labels)


def _accuracy(x_test: torch.Tensor, y_test: np.ndarray, weights: torch.Tensor, intercept: float) -> float:
    margins = (x_test.double() @ weights.double()).numpy() + intercept
    predicted = np.where(margins > 0, 1.0, -1.0)
    return float(np.mean(predicted == y_test))


class CAVTrainer:
    """Base class of CAV trainers.

    Subclasses implement :meth:`fit` (one classifier from training examples)
    and may override :meth:`train_many` to train many pairs at once.  The
    :meth:`settings` mapping enters cache keys and must change whenever the
    trained CAVs would.
    """

    name = "base"

    def __init__(self, test_fraction: float = 0.33) -> None:
        self.test_fraction = test_fraction

    def settings(self) -> dict[str, Any]:
        return {"trainer": self.name, "test_fraction": self.test_fraction}

    def fit(self, x: torch.Tensor, y: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, float]:
        """Weights (features,) and intercept of a linear classifier; ``y`` holds +1/-1."""
        raise NotImplementedError

    def train(self, positive: torch.Tensor, negative: torch.Tensor, seed: int) -> CAV:
        """One CAV from two sets of flattened activations (examples x features)."""
        rng = np.random.default_rng(seed)
        split = balanced_split(len(positive), len(negative), self.test_fraction, rng)
        stacked = torch.cat([positive, negative]).float()
        train_idx = torch.as_tensor(split.train)
        weights, intercept = self.fit(stacked[train_idx], split.labels[split.train], rng)
        weights = torch.as_tensor(weights, dtype=torch.float32).reshape(-1)
        acc = _accuracy(stacked[torch.as_tensor(split.test)], split.labels[split.test], weights, intercept)
        return CAV(weights, float(intercept), acc)

    def train_many(
        self,
        features: torch.Tensor,
        groups: Sequence[torch.Tensor],
        pairs: Sequence[tuple[int, int]],
        seeds: Sequence[int],
    ) -> list[CAV]:
        """CAVs for many (positive group, negative group) pairs of rows of ``features``."""
        return [
            self.train(features[groups[a]], features[groups[b]], seed)
            for (a, b), seed in zip(pairs, seeds)
        ]

    def gram_tiles(self, sizes: Sequence[int]) -> list[list[int]] | None:
        """The tiles of sets whose computations this trainer shares (``None``: each CAV on its own two sets).

        A trainer that computes some quantity for several sets at once (the
        default one: their Gram blocks, one product per pair of tiles) can
        make a CAV depend, in its last bits, on the sets it was tiled with;
        the engine then names the tiles in the CAV's cache key and passes them
        to :meth:`train_sets` as ``gram_tiles_of``.  ``sizes[a]``: set ``a``'s
        examples; set 0 is the concept, 1... the random sets.
        """
        return None

    def train_sets(
        self,
        load: Callable[[int], torch.Tensor],
        sizes: Sequence[int],
        pairs: Sequence[tuple[int, int]],
        seeds: Sequence[int],
        *,
        budget_bytes: int | None = None,
        blocks: dict[Any, Any] | None = None,
        gram_tiles_of: Sequence[Sequence[int]] | None = None,
    ) -> list[CAV]:
        """CAVs for many pairs of sets, each set's activations given by ``load(a)`` when needed.

        The engine trains through this, so a trainer that can work on a few
        sets at a time (the default one) keeps memory within ``budget_bytes``,
        and keeps what it computed on the sets in ``blocks`` for the next call
        on the same sets.  This base version loads the sets of the pairs and
        calls :meth:`train_many` (memory then grows with the sets; the budget
        is not kept, ``blocks`` and ``gram_tiles_of`` not used).
        """
        used = sorted({s for pair in pairs for s in pair})
        position = {a: k for k, a in enumerate(used)}
        loaded = [load(a) for a in used]
        offsets = np.cumsum([0] + [len(x) for x in loaded])
        groups = [torch.arange(int(offsets[k]), int(offsets[k + 1])) for k in range(len(used))]
        local = [(position[a], position[b]) for a, b in pairs]
        return self.train_many(torch.cat(loaded).float(), groups, local, seeds)

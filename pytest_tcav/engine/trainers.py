"""The CAV trainers, and the registry that names them for ini files and YAML.

The default, :class:`HingeSGDTrainer`, runs the reference's classifier
(scikit-learn's ``SGDClassifier(loss="hinge", alpha=0.01, max_iter=1000,
tol=1e-3)``: the same objective, learning-rate schedule and stopping rule) in
its kernel form.  With tens of examples in spaces of 10^5 features, every
update of the weight vector is a combination of training examples, so the SGD
runs on the examples' Gram matrix and all CAVs of a layer are trained together
from one matrix product, instead of one pass over 10^5 features per update.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from pytest_tcav.engine.block_gram import gram_tiles, train_hinge_pairs
from pytest_tcav.engine.cav import CAV, CAVTrainer
from pytest_tcav.engine.kernel_sgd import kernel_hinge_sgd
from pytest_tcav.errors import ConfigurationError


class HingeSGDTrainer(CAVTrainer):
    """Linear SVM by stochastic gradient descent, as the reference's default classifier.

    Same updates as scikit-learn's ``SGDClassifier(loss="hinge", penalty="l2")``:
    ``optimal`` learning rate, weight decay ``1 - (1 - l1_ratio) * eta * alpha``
    (scikit-learn applies its default ``l1_ratio=0.15`` to the decay even under the
    L2 penalty), unpenalised intercept, a reshuffle every epoch, and its stopping
    rule: stop after ``n_iter_no_change`` epochs whose mean objective did not
    improve on the best by ``tol``.  Two differences, both documented: the shuffle
    order comes from our own seeded generator, and the stopping objective leaves
    out scikit-learn's L1 term (it is reported, never applied, under the L2
    penalty, and it cannot be computed from a Gram matrix).
    """

    name = "hinge_sgd"

    def __init__(
        self,
        alpha: float = 0.01,
        max_iter: int = 1000,
        tol: float | None = 1e-3,
        n_iter_no_change: int = 5,
        l1_ratio: float = 0.15,
        test_fraction: float = 0.33,
    ) -> None:
        super().__init__(test_fraction)
        self.l1_ratio = l1_ratio
        if alpha <= 0:
            raise ConfigurationError(f"alpha must be positive, got {alpha}")
        self.alpha = alpha
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change

    def settings(self) -> dict[str, Any]:
        return {
            **super().settings(),
            "alpha": self.alpha,
            "max_iter": self.max_iter,
            "tol": self.tol,
            "n_iter_no_change": self.n_iter_no_change,
            "l1_ratio": self.l1_ratio,
        }

    def fit(self, x, y, rng):
        cav_weights, intercepts = self._fit_pairs([x.float()], [np.asarray(y, dtype=np.float64)], [rng])
        return cav_weights[0], intercepts[0]

    def _fit_pairs(
        self, xs: Sequence[torch.Tensor], ys: Sequence[np.ndarray], rngs: Sequence[np.random.Generator]
    ) -> tuple[list[torch.Tensor], list[float]]:
        """Weights and intercepts for several training sets, with one batched SGD.

        Each problem's Gram matrix and final weights come from its own examples
        only, in one matrix product each: the result of a pair does not depend on
        which other pairs it is trained with (bit for bit), so a CAV is the same
        whether it was trained alone, in a batch, or after others were cached.
        """
        size = max(len(y) for y in ys)
        n_pairs = len(xs)
        kernels = np.zeros((n_pairs, size, size))
        labels = np.zeros((n_pairs, size))
        n_valid = np.zeros(n_pairs, dtype=np.int64)
        for k, (x, y) in enumerate(zip(xs, ys)):
            n = len(y)
            kernels[k, :n, :n] = (x @ x.T).double().numpy()
            labels[k, :n] = y
            n_valid[k] = n
        coef, scale, intercept = kernel_hinge_sgd(
            kernels, labels, n_valid, rngs, self.alpha, self.max_iter, self.tol, self.n_iter_no_change,
            self.l1_ratio,
        )
        weights = [
            torch.as_tensor(coef[k, : len(y)] * scale[k], dtype=torch.float32) @ x
            for k, (x, y) in enumerate(zip(xs, ys))
        ]
        return weights, [float(b) for b in intercept]

    def train(self, positive: torch.Tensor, negative: torch.Tensor, seed: int) -> CAV:
        """One CAV from two sets: :meth:`train_many` on that one pair (the same numbers, bit for bit)."""
        features = torch.cat([positive, negative]).float()
        groups = [torch.arange(len(positive)), torch.arange(len(positive), len(features))]
        return self.train_many(features, groups, [(0, 1)], [seed])[0]

    def train_many(self, features, groups, pairs, seeds):
        """All pairs' CAVs from one batched SGD on Gram matrices assembled from per-set blocks.

        :func:`~pytest_tcav.engine.block_gram.train_hinge_pairs` on the rows of
        ``features``, with every set at hand.
        """
        def load(a: int) -> torch.Tensor:
            return features[groups[a]]

        return train_hinge_pairs(self, load, [len(g) for g in groups], pairs, seeds)

    def gram_tiles(self, sizes):
        """The concept alone, then the random sets in runs of at most ``block_gram.TILE_ROWS`` examples.

        The concept alone: the random sets' blocks, and so the random pairs'
        CAVs, must not depend on which concept they were computed beside.
        ``None`` (each block from its own product, sets loaded a budget at a
        time) where every random set would be a tile of its own: sets of over
        half a tile gain nothing from tiles, and loading two sets per product
        cost the 50 x 100 point of ``benchmarks/sweep.py`` 40 s.
        """
        randoms = gram_tiles(sizes, start=1)
        if all(len(tile) == 1 for tile in randoms):
            return None
        return [[0], *randoms]

    def train_sets(self, load, sizes, pairs, seeds, *, budget_bytes=None, blocks=None, gram_tiles_of=None):
        """As :meth:`train_many`, with sets loaded as needed and at most ``budget_bytes`` of them held."""
        return train_hinge_pairs(self, load, sizes, pairs, seeds, budget_bytes=budget_bytes, blocks=blocks,
                                 gram_tiles_of=gram_tiles_of)


class SklearnSGDTrainer(CAVTrainer):
    """scikit-learn's ``SGDClassifier`` itself, one fit per CAV: the reference, slower."""

    name = "sklearn_sgd"

    def __init__(self, alpha: float = 0.01, max_iter: int = 1000, tol: float | None = 1e-3,
                 test_fraction: float = 0.33) -> None:
        super().__init__(test_fraction)
        self.alpha, self.max_iter, self.tol = alpha, max_iter, tol

    def settings(self):
        return {**super().settings(), "alpha": self.alpha, "max_iter": self.max_iter, "tol": self.tol}

    def fit(self, x, y, rng):
        import warnings

        with _global_random_kept():
            from sklearn.exceptions import ConvergenceWarning
            from sklearn.linear_model import SGDClassifier

        clf = SGDClassifier(loss="hinge", alpha=self.alpha, max_iter=self.max_iter, tol=self.tol,
                            random_state=int(rng.integers(2**31 - 1)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(x.double().numpy(), y)
        sign = 1.0 if clf.classes_[1] > 0 else -1.0
        return torch.as_tensor(sign * clf.coef_[0], dtype=torch.float32), float(sign * clf.intercept_[0])


@contextlib.contextmanager
def _global_random_kept() -> Iterator[None]:
    """Keep Python's global random state across a first import of scikit-learn.

    scikit-learn imports ``rich`` when it is installed, and ``rich`` draws from
    the global ``random`` at import time; the engine promises to leave every
    global generator as it found it, so a test's own seeded draws do not depend
    on whether a CAV was trained first.
    """
    state = random.getstate()
    try:
        yield
    finally:
        random.setstate(state)


class LogisticTrainer(CAVTrainer):
    """L2-regularised logistic regression (scikit-learn, lbfgs)."""

    name = "logistic"

    def __init__(self, C: float = 1.0, max_iter: int = 1000, test_fraction: float = 0.33) -> None:
        super().__init__(test_fraction)
        self.C, self.max_iter = C, max_iter

    def settings(self):
        return {**super().settings(), "C": self.C, "max_iter": self.max_iter}

    def fit(self, x, y, rng):
        with _global_random_kept():
            from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(C=self.C, max_iter=self.max_iter)
        clf.fit(x.double().numpy(), y)
        sign = 1.0 if clf.classes_[1] > 0 else -1.0
        return torch.as_tensor(sign * clf.coef_[0], dtype=torch.float32), float(sign * clf.intercept_[0])


class MeanDifferenceTrainer(CAVTrainer):
    """The difference of the two sets' mean activations: no optimisation, no hyperparameters."""

    name = "mean_difference"

    def fit(self, x, y, rng):
        xd = x.double()
        pos = xd[torch.as_tensor(y > 0)].mean(0)
        neg = xd[torch.as_tensor(y < 0)].mean(0)
        weights = pos - neg
        intercept = -float(weights @ (pos + neg)) / 2.0
        return weights.float(), intercept


TRAINERS = {
    cls.name: cls for cls in (HingeSGDTrainer, SklearnSGDTrainer, LogisticTrainer, MeanDifferenceTrainer)
}


def make_trainer(spec: CAVTrainer | str | None) -> CAVTrainer:
    """A trainer instance from an instance, a registered name, or None (the default)."""
    if spec is None:
        return HingeSGDTrainer()
    if isinstance(spec, CAVTrainer):
        return spec
    if isinstance(spec, str) and spec in TRAINERS:
        return TRAINERS[spec]()
    raise ConfigurationError(f"unknown CAV trainer {spec!r}; known: {sorted(TRAINERS)}")

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
import math
import random
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from pytest_tcav.engine.cav import CAV, CAVTrainer, balanced_split
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
        coef, scale, intercept = _kernel_hinge_sgd(
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

        A pair's Gram matrix is made of the blocks ``X_a X_a^T``, ``X_a X_b^T`` and
        ``X_b X_b^T`` of its two sets, each one matrix product of fixed shape that
        depends on those two sets only: a set's own block is computed once for all
        the pairs it is in (a concept against 20 random sets, the 190 random pairs),
        and no training example is gathered.  The held-out accuracy comes from the
        same blocks (the margins of the kernel form), and the weights from one
        product per set.  So a CAV does not depend on which other pairs are
        trained with it, bit for bit.
        """
        features = features.float()
        rngs = [np.random.default_rng(seed) for seed in seeds]
        splits = [balanced_split(len(groups[a]), len(groups[b]), self.test_fraction, rng)
                  for (a, b), rng in zip(pairs, rngs)]
        gram = _BlockGram(features, groups)
        size = max(len(split.train) for split in splits)
        kernels = np.zeros((len(pairs), size, size))
        labels = np.zeros((len(pairs), size))
        n_valid = np.zeros(len(pairs), dtype=np.int64)
        for k, ((a, b), split) in enumerate(zip(pairs, splits)):
            n = len(split.train)
            kernels[k, :n, :n] = gram.pair(a, b)[np.ix_(split.train, split.train)]
            labels[k, :n] = split.labels[split.train]
            n_valid[k] = n
        coef, scale, intercept = _kernel_hinge_sgd(
            kernels, labels, n_valid, rngs, self.alpha, self.max_iter, self.tol, self.n_iter_no_change,
            self.l1_ratio,
        )
        del kernels
        cavs: list[CAV] = []
        for k, ((a, b), split) in enumerate(zip(pairs, splits)):
            n, n_a = len(split.train), len(groups[a])
            scaled = coef[k, :n] * scale[k]
            coefficients = np.zeros(n_a + len(groups[b]))
            coefficients[split.train] = scaled
            c = torch.as_tensor(coefficients, dtype=torch.float32)
            weights = c[:n_a] @ gram.rows(a) + c[n_a:] @ gram.rows(b)
            margins = gram.pair(a, b)[np.ix_(split.test, split.train)] @ scaled + intercept[k]
            accuracy = float(np.mean(np.where(margins > 0, 1.0, -1.0) == split.labels[split.test]))
            cavs.append(CAV(weights, float(intercept[k]), accuracy))
        return cavs


class _BlockGram:
    """Products of example sets, ``X_a X_b^T``, computed once each, on demand (float64 copies)."""

    def __init__(self, features: torch.Tensor, groups: Sequence[torch.Tensor]) -> None:
        self._features = features
        self._groups = groups
        self._rows: dict[int, torch.Tensor] = {}
        self._blocks: dict[tuple[int, int], np.ndarray] = {}

    def rows(self, a: int) -> torch.Tensor:
        """Set ``a``'s examples: a view when its rows are consecutive, else a gathered copy."""
        if a not in self._rows:
            index = self._groups[a]
            start = int(index[0]) if len(index) else 0
            if len(index) and torch.equal(index, torch.arange(start, start + len(index), dtype=index.dtype)):
                self._rows[a] = self._features[start : start + len(index)]
            else:
                self._rows[a] = self._features[index]
        return self._rows[a]

    def block(self, a: int, b: int) -> np.ndarray:
        if (a, b) not in self._blocks:
            x = self.rows(a)
            self._blocks[(a, b)] = (x @ (x if a == b else self.rows(b)).T).double().numpy()
        return self._blocks[(a, b)]

    def pair(self, a: int, b: int) -> np.ndarray:
        """The Gram matrix of the examples of ``a`` then ``b`` (symmetric: the lower block is transposed)."""
        cross = self.block(a, b)
        return np.block([[self.block(a, a), cross], [cross.T, self.block(b, b)]])


def _kernel_hinge_sgd(
    kernels: np.ndarray,
    labels: np.ndarray,
    n_valid: np.ndarray,
    rngs: Sequence[np.random.Generator],
    alpha: float,
    max_iter: int,
    tol: float | None,
    n_iter_no_change: int,
    l1_ratio: float = 0.15,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hinge-loss SGD for several problems at once, in terms of Gram matrices.

    The weight vector of problem ``p`` is ``scale[p] * coef[p] @ X_p``.  Each
    problem shuffles its own examples with its own generator and stops by its
    own rule, so its result does not depend on which problems it is batched with.

    SGD is sequential within a problem, so the loop over steps stays in Python;
    what does not depend on the data is taken out of it.  Per epoch, the
    shuffled examples' labels, kernel columns and diagonal entries are gathered
    once, and the learning rates and the weight decay's running product (the
    ``scale``) are computed for the whole epoch with ``cumprod``, which
    multiplies in the same order as a step-by-step loop, so the numbers are
    the same bit for bit.  What is left per step is the margin, the hinge
    update and its rank-one effect on the margins.
    """
    n_problems, size = labels.shape
    coef = np.zeros((n_problems, size))
    margins = np.zeros((n_problems, size))  # kernels @ coef, without scale
    scale = np.ones(n_problems)
    intercept = np.zeros(n_problems)
    typical_w = math.sqrt(1.0 / math.sqrt(alpha))
    optimal_init = 1.0 / (typical_w * alpha)
    t = np.ones(n_problems)
    decay = (1.0 - l1_ratio) * alpha
    sqnorm = np.zeros(n_problems)  # coef @ kernels @ coef, without scale
    best_objective = np.full(n_problems, np.inf)
    no_improvement = np.zeros(n_problems, dtype=np.int64)
    active = np.ones(n_problems, dtype=bool)
    rows = np.arange(n_problems)
    steps = np.arange(size)
    for _epoch in range(max_iter):
        if not active.any():
            break
        order = np.full((n_problems, size), -1)
        for p in np.flatnonzero(active):
            order[p, : n_valid[p]] = rngs[int(p)].permutation(n_valid[p])
        live = order >= 0  # (problems, steps)
        index = np.where(live, order, 0)
        y_steps = labels[rows[:, None], index]
        diag_steps = kernels[rows[:, None], index, index]
        columns = kernels[rows[:, None, None], steps[None, None, :], index[:, :, None]]  # K[p, :, order[p, s]]
        # learning rate per step: t advances on live steps only
        t_steps = t[:, None] + np.concatenate([np.zeros((n_problems, 1)), np.cumsum(live, axis=1)[:, :-1]], axis=1)
        eta = 1.0 / (alpha * (optimal_init + t_steps - 1.0))
        factor = np.where(live, np.maximum(0.0, 1.0 - eta * decay), 1.0)
        scale_after = np.cumprod(np.concatenate([scale[:, None], factor], axis=1), axis=1)
        if scale_after.min() < 1e-9:
            # fold the scale into the coefficients before it underflows
            coef *= scale[:, None]
            margins *= scale[:, None]
            sqnorm *= scale**2
            scale = np.ones(n_problems)
            scale_after = np.cumprod(np.concatenate([scale[:, None], factor], axis=1), axis=1)
            if scale_after.min() < 1e-9:
                raise FloatingPointError(
                    f"alpha={alpha} decays the weights to zero within one epoch; use a smaller alpha"
                )
        eta_y = eta * y_steps
        threshold = np.where(live, 1.0, -np.inf)  # a step that is not live never updates
        flat_index = rows[:, None] * size + index
        flat_margins = margins.reshape(-1)  # a view: updates below land in margins
        z_steps = np.empty((n_problems, size))
        margin_steps = np.zeros((n_problems, size))
        delta_steps = np.zeros((n_problems, size))
        for step in range(size):
            margin = flat_margins.take(flat_index[:, step])
            z = (scale_after[:, step] * margin + intercept) * y_steps[:, step]
            z_steps[:, step] = z
            violated = z <= threshold[:, step]
            if not violated.any():
                continue
            update = np.where(violated, eta_y[:, step], 0.0)
            delta = update / scale_after[:, step + 1]
            margin_steps[:, step] = margin
            delta_steps[:, step] = delta
            margins += delta[:, None] * columns[:, step, :]
            intercept += update
        # the squared norm before each step, accumulated in step order (cumsum is sequential)
        increments = 2.0 * delta_steps * margin_steps + delta_steps * delta_steps * diag_steps
        sqnorm_path = np.cumsum(np.concatenate([sqnorm[:, None], increments], axis=1), axis=1)
        sqnorm_steps = sqnorm_path[:, :-1]
        sqnorm = sqnorm_path[:, -1].copy()
        # each example is visited once per epoch, so one addition per coefficient, as step by step
        coef[np.broadcast_to(rows[:, None], live.shape)[live], index[live]] += delta_steps[live]
        t = t_steps[:, -1] + live[:, -1]
        if tol is not None:
            objective = np.maximum(0.0, 1.0 - z_steps) + 0.5 * decay * scale_after[:, :-1] ** 2 * sqnorm_steps
            sumloss = np.cumsum(np.where(live, objective, 0.0), axis=1)[:, -1]
            mean_objective = sumloss / np.maximum(n_valid, 1)
            worse = mean_objective > best_objective - tol
            no_improvement = np.where(active & worse, no_improvement + 1, np.where(active, 0, no_improvement))
            best_objective = np.where(active, np.minimum(best_objective, mean_objective), best_objective)
            active &= no_improvement < n_iter_no_change
        scale = scale_after[:, -1].copy()
    return coef, scale, intercept


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

"""Hinge-loss SGD in kernel form: the CAV trainer's inner loop, shared by its batched and streamed paths.

With tens of examples in spaces of 10^5 features, every SGD update of a linear
classifier's weights is a combination of training examples, so the SGD can
run on the examples' Gram matrix; many problems run together, each with its own
generator and stopping rule.

SGD is sequential within a problem: an epoch is a loop over steps whose every
update depends on the last.  That loop runs compiled (:mod:`.kernel_sgd_compiled`,
numba) where numba imports, and otherwise as numpy operations vectorised across
the problems (:func:`numpy_epoch`, the reference).  Both do the same floating
point operations in the same order, so they give the same numbers bit for bit
(tested).  Compiled, the SGD of a 20 x 30 check's 630 CAVs takes 0.7 s instead
of 4.5 s (benchmarks/engine_parts.py compares the two ways): the numpy loop
pays Python's overhead on every step of the slowest problem of a group, the
compiled one only per epoch (drawing the shuffles).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence

import numpy as np

#: ``epoch(rows, order, kernels, labels, n_valid, coef, margins, scale, intercept, t, sqnorm, alpha,
#: optimal_init, decay) -> mean objective of each row``: one epoch of the problems ``rows``, in place.
Epoch = Callable[..., np.ndarray]

#: A scale below this is folded into the coefficients before it underflows.
SCALE_FLOOR = 1e-9
#: Epochs of shuffles drawn per call of a problem's generator (:class:`Shuffles`), and the most bytes they hold.
SHUFFLE_EPOCHS = 32
SHUFFLE_BYTES = 8 * 2**20


def kernel_hinge_sgd(
    kernels: np.ndarray,
    labels: np.ndarray,
    n_valid: np.ndarray,
    rngs: Sequence[np.random.Generator],
    alpha: float,
    max_iter: int,
    tol: float | None,
    n_iter_no_change: int,
    l1_ratio: float = 0.15,
    *,
    epoch: Epoch | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hinge-loss SGD for several problems at once, in terms of Gram matrices.

    The weight vector of problem ``p`` is ``scale[p] * coef[p] @ X_p``.  Each
    problem shuffles its own examples with its own generator and stops by its
    own rule, so its result does not depend on which problems it is batched
    with; an epoch runs only the problems still going.  ``epoch`` chooses the
    step loop (default: :func:`default_epoch`).
    """
    epoch = epoch or default_epoch()
    kernels = np.ascontiguousarray(kernels, dtype=np.float64)
    labels = np.ascontiguousarray(labels, dtype=np.float64)
    n_valid = np.ascontiguousarray(n_valid, dtype=np.int64)
    n_problems, size = labels.shape
    coef = np.zeros((n_problems, size))
    margins = np.zeros((n_problems, size))  # kernels @ coef, without scale
    scale = np.ones(n_problems)
    intercept = np.zeros(n_problems)
    sqnorm = np.zeros(n_problems)  # coef @ kernels @ coef, without scale
    t = np.ones(n_problems)
    typical_w = math.sqrt(1.0 / math.sqrt(alpha))
    optimal_init = 1.0 / (typical_w * alpha)
    decay = (1.0 - l1_ratio) * alpha
    best_objective = np.full(n_problems, np.inf)
    no_improvement = np.zeros(n_problems, dtype=np.int64)
    active = np.ones(n_problems, dtype=bool)
    shuffles = Shuffles(rngs, n_valid, size)
    for number in range(max_iter):
        rows = np.flatnonzero(active)
        if not rows.size:
            break
        order = shuffles.order(number, rows)
        mean_objective = epoch(rows, order, kernels, labels, n_valid, coef, margins, scale, intercept, t, sqnorm,
                               float(alpha), float(optimal_init), float(decay))
        if tol is not None:
            worse = mean_objective > best_objective[rows] - tol
            no_improvement[rows] = np.where(worse, no_improvement[rows] + 1, 0)
            best_objective[rows] = np.minimum(best_objective[rows], mean_objective)
            active[rows] = no_improvement[rows] < n_iter_no_change
    return coef, scale, intercept


class Shuffles:
    """Each problem's order of examples for every epoch, drawn several epochs at a time.

    A problem's epoch ``e`` visits its examples in the order of the ``e``-th
    ``rng.permutation(n)`` its generator would give; ``Generator.permuted``
    draws the same permutations, one row after another (tested), for a whole
    block of epochs in one call (0.6 us a shuffle instead of 2.5 us, and a
    20 x 30 check draws 170,000 of them: its problems run about 250 epochs).
    A problem that stops within a block leaves its generator past the draws it
    used; the generators serve nothing after the SGD.
    """

    def __init__(self, rngs: Sequence[np.random.Generator], n_valid: np.ndarray, size: int) -> None:
        self._rngs = rngs
        self._n_valid = n_valid
        # epochs per draw: up to SHUFFLE_EPOCHS, fewer where the block would pass SHUFFLE_BYTES
        per_epoch = max(1, len(rngs) * size * 8)
        self._block = max(1, min(SHUFFLE_EPOCHS, SHUFFLE_BYTES // per_epoch))
        self._drawn = np.zeros((len(rngs), self._block, size), dtype=np.int64)

    def order(self, epoch: int, rows: np.ndarray) -> np.ndarray:
        """The orders of epoch ``epoch`` (counted from 0, one call per epoch) of the problems ``rows``."""
        within = epoch % self._block
        if within == 0:
            for p in rows:
                n = int(self._n_valid[p])
                epochs = np.broadcast_to(np.arange(n, dtype=np.int64), (self._block, n))
                self._drawn[p, :, :n] = self._rngs[int(p)].permuted(epochs, axis=1)
        return self._drawn[rows, within]


def default_epoch() -> Epoch:
    """The compiled step loop where numba imports (unless ``TCAV_COMPILED_SGD=0``), else :func:`numpy_epoch`."""
    if os.environ.get("TCAV_COMPILED_SGD", "1") != "0":
        compiled = compiled_epoch()
        if compiled is not None:
            return compiled
    return numpy_epoch


def compiled_epoch() -> Epoch | None:
    """The compiled step loop with :func:`numpy_epoch`'s signature; ``None`` where numba does not import."""
    from pytest_tcav.engine.kernel_sgd_compiled import compiled_kernel

    kernel = compiled_kernel()
    if kernel is None:
        return None

    def epoch(rows: np.ndarray, order: np.ndarray, kernels: np.ndarray, labels: np.ndarray, n_valid: np.ndarray,
              coef: np.ndarray, margins: np.ndarray, scale: np.ndarray, intercept: np.ndarray, t: np.ndarray,
              sqnorm: np.ndarray, alpha: float, optimal_init: float, decay: float) -> np.ndarray:
        mean_objective = np.empty(rows.size)
        if not kernel(rows, order, kernels, labels, n_valid, coef, margins, scale, intercept, t, sqnorm, alpha,
                      optimal_init, decay, SCALE_FLOOR, mean_objective):
            raise underflow_error(alpha)
        return mean_objective

    return epoch


def underflow_error(alpha: float) -> FloatingPointError:
    return FloatingPointError(f"alpha={alpha} decays the weights to zero within one epoch; use a smaller alpha")


def numpy_epoch(rows: np.ndarray, order: np.ndarray, kernels: np.ndarray, labels: np.ndarray, n_valid: np.ndarray,
                coef: np.ndarray, margins: np.ndarray, scale: np.ndarray, intercept: np.ndarray, t: np.ndarray,
                sqnorm: np.ndarray, alpha: float, optimal_init: float, decay: float) -> np.ndarray:
    """One epoch of the problems ``rows``, the step loop in Python, each step vectorised across the problems.

    What does not depend on the data is taken out of the loop: the shuffled
    examples' labels, kernel columns and diagonal entries are gathered once,
    and the learning rates and the weight decay's running product (the
    ``scale``) are computed for the whole epoch with ``cumprod``, which
    multiplies in the same order as a step-by-step loop.  What is left per
    step is the margin, the hinge update and its rank-one effect on the margins.
    """
    n_rows, size = order.shape
    live = np.arange(size)[None, :] < n_valid[rows][:, None]  # (rows, steps): the first n_valid steps
    index = np.where(live, order, 0)
    local = np.arange(n_rows)
    every = n_rows == len(kernels)  # no problem has stopped: work on the arrays themselves, not on copies
    k = kernels if every else kernels[rows]
    y_steps = labels[rows[:, None], index]
    diag_steps = k[local[:, None], index, index]
    columns = k[local[:, None, None], np.arange(size)[None, None, :], index[:, :, None]]  # K[p, :, order[p, s]]
    coef_r, margins_r = (coef, margins) if every else (coef[rows], margins[rows])
    scale_r, intercept_r, sqnorm_r, t_r = scale[rows], intercept[rows], sqnorm[rows], t[rows]
    # learning rate per step: t advances on live steps only
    t_steps = t_r[:, None] + np.concatenate([np.zeros((n_rows, 1)), np.cumsum(live, axis=1)[:, :-1]], axis=1)
    eta = 1.0 / (alpha * (optimal_init + t_steps - 1.0))
    factor = np.where(live, np.maximum(0.0, 1.0 - eta * decay), 1.0)
    scale_after = np.cumprod(np.concatenate([scale_r[:, None], factor], axis=1), axis=1)
    low = scale_after[:, -1] < SCALE_FLOOR  # the scale only decreases: its last value is its least
    if low.any():
        # fold the scale into the coefficients before it underflows
        coef_r[low] *= scale_r[low, None]
        margins_r[low] *= scale_r[low, None]
        sqnorm_r[low] *= scale_r[low] ** 2
        scale_r[low] = 1.0
        scale_after = np.cumprod(np.concatenate([scale_r[:, None], factor], axis=1), axis=1)
        if (scale_after[:, -1] < SCALE_FLOOR).any():
            raise underflow_error(alpha)
    eta_y = eta * y_steps
    threshold = np.where(live, 1.0, -np.inf)  # a step that is not live never updates
    flat_index = local[:, None] * size + index
    flat_margins = margins_r.reshape(-1)  # a view: updates below land in margins_r
    z_steps = np.empty((n_rows, size))
    margin_steps = np.zeros((n_rows, size))
    delta_steps = np.zeros((n_rows, size))
    for step in range(size):
        margin = flat_margins.take(flat_index[:, step])
        z = (scale_after[:, step] * margin + intercept_r) * y_steps[:, step]
        z_steps[:, step] = z
        violated = z <= threshold[:, step]
        if not violated.any():
            continue
        update = np.where(violated, eta_y[:, step], 0.0)
        delta = update / scale_after[:, step + 1]
        margin_steps[:, step] = margin
        delta_steps[:, step] = delta
        margins_r += delta[:, None] * columns[:, step, :]
        intercept_r += update
    # the squared norm before each step, accumulated in step order (cumsum is sequential)
    increments = 2.0 * delta_steps * margin_steps + delta_steps * delta_steps * diag_steps
    sqnorm_path = np.cumsum(np.concatenate([sqnorm_r[:, None], increments], axis=1), axis=1)
    # each example is visited once per epoch, so one addition per coefficient, as step by step
    coef_r[np.broadcast_to(local[:, None], live.shape)[live], index[live]] += delta_steps[live]
    objective = np.maximum(0.0, 1.0 - z_steps) + 0.5 * decay * scale_after[:, :-1] ** 2 * sqnorm_path[:, :-1]
    sumloss = np.cumsum(np.where(live, objective, 0.0), axis=1)[:, -1]
    if not every:  # otherwise coef_r and margins_r are coef and margins, updated in place
        coef[rows], margins[rows] = coef_r, margins_r
    scale[rows], intercept[rows] = scale_after[:, -1], intercept_r
    sqnorm[rows], t[rows] = sqnorm_path[:, -1], t_steps[:, -1] + live[:, -1]
    return sumloss / np.maximum(n_valid[rows], 1)

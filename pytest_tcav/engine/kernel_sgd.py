"""Hinge-loss SGD in kernel form: the CAV trainer's inner loop, shared by its batched and streamed paths.

With tens of examples in spaces of 10^5 features, every SGD update of a linear
classifier's weights is a combination of training examples, so the SGD can
run on the examples' Gram matrix; many problems run together, each with its own
generator and stopping rule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


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

"""The hinge SGD's epoch as a compiled loop (numba), the same arithmetic as :func:`.kernel_sgd.numpy_epoch`.

An SGD step is a handful of scalar operations and one update of a row of
margins; run from Python, each step costs microseconds of interpreter and
dispatch overhead, and a group of CAVs runs hundreds of epochs of tens of
steps.  Compiled, the epoch costs what its arithmetic costs.

Bit for bit the same as the numpy reference: every operation is written in
the reference's order (``(2 * delta) * margin``, ``(0.5 * decay) * scale ** 2``,
sums accumulated step by step), numba is not asked for fast-math (no
reassociation, no fused multiply-add), and steps that do not update leave
every value as the reference's additions of zero do.  numba is imported on
first use, not with the package; the compiled code is cached on disk by
numba, so a process compiles it at most once per installation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_kernel: Any = None
_tried = False


def compiled_kernel() -> Any:
    """``_epoch_rows`` compiled (on first use, or loaded from numba's cache); ``None`` where numba does not import."""
    global _kernel, _tried
    if not _tried:
        _tried = True
        try:
            import numba
        except ImportError:  # the numpy reference runs instead: the same numbers, slower
            return None
        _kernel = numba.njit(cache=True, nogil=True)(_epoch_rows)
    return _kernel


def _epoch_rows(rows, order, kernels, labels, n_valid, coef, margins, scale, intercept, t, sqnorm, alpha,
                optimal_init, decay, scale_floor, mean_objective):  # pragma: no cover - runs compiled
    """One epoch of each problem in ``rows``, in place; False when a scale underflows even after folding."""
    size = labels.shape[1]
    path = np.empty(size + 1)
    eta = np.empty(size)
    half_decay = 0.5 * decay
    for r in range(rows.shape[0]):
        p = rows[r]
        n = n_valid[p]
        for s in range(n):
            eta[s] = 1.0 / (alpha * (optimal_init + (t[p] + s) - 1.0))
        # the decay's running product, as the reference's cumprod; once more from 1 after folding the scale
        # into the coefficients where it would pass the floor, and an error if it passes it even then
        for attempt in range(2):
            path[0] = scale[p]
            for s in range(n):
                factor = 1.0 - eta[s] * decay
                if not factor > 0.0:
                    factor = 0.0 if factor <= 0.0 else factor  # NaN stays NaN, as np.maximum
                path[s + 1] = path[s] * factor
            if not path[n] < scale_floor:
                break
            if attempt:
                return False
            for j in range(size):
                coef[p, j] *= scale[p]
                margins[p, j] *= scale[p]
            sqnorm[p] *= scale[p] * scale[p]
            scale[p] = 1.0
        b = intercept[p]
        sq = sqnorm[p]
        total = 0.0
        for s in range(n):
            i = order[r, s]
            y = labels[p, i]
            margin = margins[p, i]
            z = (path[s] * margin + b) * y
            loss = 1.0 - z
            if not loss > 0.0:
                loss = 0.0 if loss <= 0.0 else loss
            total += loss + half_decay * (path[s] * path[s]) * sq
            if z <= 1.0:
                update = eta[s] * y
                delta = update / path[s + 1]
                sq = sq + (2.0 * delta * margin + delta * delta * kernels[p, i, i])
                for j in range(size):
                    margins[p, j] += delta * kernels[p, j, i]
                b += update
                coef[p, i] += delta
        intercept[p] = b
        sqnorm[p] = sq
        scale[p] = path[n]
        t[p] = t[p] + n
        mean_objective[r] = total / max(n, 1)
    return True

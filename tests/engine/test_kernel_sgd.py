"""The hinge SGD's two step loops: the compiled one (numba) gives the numpy reference's numbers, bit for bit.

The reference (``numpy_epoch``) is what the CAV tests elsewhere check against
scikit-learn and Captum; here the compiled loop is held to it exactly, on
problems of mixed sizes (padding), both stopping rules, a weight decay strong
enough to fold the scale into the coefficients, and the underflow error.
"""

from __future__ import annotations

import numpy as np
import pytest

from pytest_tcav.engine import kernel_sgd
from pytest_tcav.engine.kernel_sgd import kernel_hinge_sgd, numpy_epoch


def _problems(n_problems: int, size: int, seed: int, features: int = 50):
    """Gram matrices of activation-like sets (non-negative, shifted by class), padded to ``size``."""
    gen = np.random.default_rng(seed)
    kernels = np.zeros((n_problems, size, size))
    labels = np.zeros((n_problems, size))
    n_valid = np.zeros(n_problems, dtype=np.int64)
    for p in range(n_problems):
        n = int(gen.integers(4, size + 1))
        y = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
        x = np.maximum(gen.normal(size=(n, features)) + 0.4 * y[:, None] * gen.normal(size=features), 0.0)
        kernels[p, :n, :n] = x @ x.T
        labels[p, :n] = y
        n_valid[p] = n
    return kernels, labels, n_valid


def _run(epoch, kernels, labels, n_valid, seeds, **settings):
    rngs = [np.random.default_rng(s) for s in seeds]
    args = {"alpha": 0.01, "max_iter": 1000, "tol": 1e-3, "n_iter_no_change": 5, "l1_ratio": 0.15, **settings}
    return kernel_hinge_sgd(kernels, labels, n_valid, rngs, epoch=epoch, **args)


@pytest.fixture(scope="module")
def compiled():
    pytest.importorskip("numba")
    epoch = kernel_sgd.compiled_epoch()
    assert epoch is not None
    return epoch


@pytest.mark.parametrize(("n_problems", "size", "settings"), [
    (1, 6, {}),
    (7, 40, {}),
    (12, 25, {"alpha": 0.1}),
    (5, 30, {"tol": None, "max_iter": 40}),
    (4, 20, {"n_iter_no_change": 2, "tol": 1e-2}),
    # decay six times alpha: the scale passes 1e-9 within 200 epochs and is folded into the coefficients
    (3, 40, {"l1_ratio": -5.0, "tol": None, "max_iter": 200}),
])
def test_compiled_epochs_give_the_reference_numbers_bit_for_bit(compiled, n_problems, size, settings):
    kernels, labels, n_valid = _problems(n_problems, size, seed=n_problems * 100 + size)
    seeds = range(10, 10 + n_problems)
    reference = _run(numpy_epoch, kernels, labels, n_valid, seeds, **settings)
    fast = _run(compiled, kernels, labels, n_valid, seeds, **settings)
    for mine, theirs in zip(fast, reference):
        assert mine.tobytes() == theirs.tobytes()


def test_the_scale_is_folded_where_it_would_underflow(compiled, monkeypatch):
    kernels, labels, n_valid = _problems(2, 30, seed=3)
    settings = {"l1_ratio": -5.0, "tol": None, "max_iter": 200}
    for epoch in (numpy_epoch, compiled):
        _coef, scale, _intercept = _run(epoch, kernels, labels, n_valid, [1, 2], **settings)
        assert np.all(scale > 1e-9)
    monkeypatch.setattr(kernel_sgd, "SCALE_FLOOR", 0.0)  # never folded: the scale does pass the floor
    _coef, scale, _intercept = _run(numpy_epoch, kernels, labels, n_valid, [1, 2], **settings)
    assert np.all(scale < 1e-9)


def test_a_problem_does_not_depend_on_its_batch(compiled):
    kernels, labels, n_valid = _problems(6, 30, seed=8)
    together = _run(compiled, kernels, labels, n_valid, range(6))
    for p in range(6):
        alone = _run(compiled, kernels[p:p + 1], labels[p:p + 1], n_valid[p:p + 1], [p])
        for batched, single in zip(together, alone):
            assert batched[p].tobytes() == single[0].tobytes()


def test_both_loops_refuse_a_decay_that_zeroes_the_weights(compiled):
    kernels, labels, n_valid = _problems(2, 10, seed=4)
    for epoch in (numpy_epoch, compiled):
        with pytest.raises(FloatingPointError, match="alpha=5"):
            _run(epoch, kernels, labels, n_valid, [1, 2], alpha=5.0)


def test_the_reference_runs_where_numba_is_missing_or_switched_off(monkeypatch):
    from pytest_tcav.engine import kernel_sgd_compiled

    monkeypatch.setattr(kernel_sgd_compiled, "compiled_kernel", lambda: None)
    assert kernel_sgd.default_epoch() is numpy_epoch
    monkeypatch.undo()
    monkeypatch.setenv("TCAV_COMPILED_SGD", "0")
    assert kernel_sgd.default_epoch() is numpy_epoch


@pytest.mark.parametrize("shuffle_bytes", [kernel_sgd.SHUFFLE_BYTES, 9 * 7 * 7 * 8, 1])
def test_shuffles_drawn_in_blocks_are_each_epochs_permutation(monkeypatch, shuffle_bytes):
    """Epoch e of problem p visits its examples in the e-th ``permutation(n)`` of p's generator, whatever the
    block of epochs drawn at once (32, 9 or 1 here) and whichever problems have stopped."""
    monkeypatch.setattr(kernel_sgd, "SHUFFLE_BYTES", shuffle_bytes)
    n_valid = np.array([7, 1, 4, 6, 0, 5, 7])
    size = 7
    shuffles = kernel_sgd.Shuffles([np.random.default_rng(s) for s in range(3, 10)], n_valid, size)
    references = [np.random.default_rng(s) for s in range(3, 10)]
    active = np.ones(len(n_valid), dtype=bool)
    for epoch in range(75):
        if epoch in (5, 31, 40):
            active[epoch % len(active)] = False  # a problem stops; the others go on with their own draws
        rows = np.flatnonzero(active)
        order = shuffles.order(epoch, rows)
        assert order.shape == (len(rows), size)
        for r, p in enumerate(rows):
            n = n_valid[p]
            np.testing.assert_array_equal(order[r, :n], references[p].permutation(n))

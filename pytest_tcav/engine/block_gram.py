"""CAVs of many pairs of example sets from Gram blocks, with the sets' activations loaded a few at a time.

A pair's linear classifier (the default hinge-loss SGD) needs only inner
products of its examples, so each pair's Gram matrix is assembled from the
blocks ``X_a X_a^T``, ``X_a X_b^T`` and ``X_b X_b^T`` of its two sets, and its
weights are one product per set at the end.  That makes memory a choice: the
blocks are small (examples x examples), and the activations (examples x
features, gigabytes for fifty sets at a wide layer) are needed only while the
blocks and the weights are computed.  Here they are loaded in tiles of sets
that fit ``budget_bytes``, row tile against column tile, so that the memory
held does not grow with the number of sets.

Every block is computed from each set as its own 64-byte aligned allocation
(copied when it is not), so a CAV's bits do not depend on which sets were
loaded with it, where they came from (a forward pass or the disk cache), or
which worker trained it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from pytest_tcav.engine.cav import CAV, balanced_split
from pytest_tcav.engine.kernel_sgd import kernel_hinge_sgd

#: Loads set ``a``'s activations (examples x features) when asked.
Loader = Callable[[int], torch.Tensor]


class _Tiles:
    """Sets loaded a tile at a time, each as its own float32 allocation."""

    def __init__(self, load: Loader, sets: Sequence[int], budget_bytes: int | None) -> None:
        self._load = load
        self._budget = budget_bytes
        self.sets = sorted(set(sets))
        self._first: dict[int, torch.Tensor] = {}

    def fresh(self, a: int) -> torch.Tensor:
        first = self._first.pop(a, None)
        if first is not None:
            return first
        x = self._load(a).float().contiguous()
        # a tensor of its own allocation (torch aligns those to 64 bytes) is used as it is; a view, or a
        # tensor read from the disk cache at another alignment, is copied: the products' rounding can
        # depend on alignment, and a CAV must not depend on where its sets came from
        own = x.storage_offset() == 0 and x.untyped_storage().nbytes() == x.nelement() * x.element_size()
        return x if own and x.data_ptr() % 64 == 0 else x.clone()

    def chunks(self) -> list[list[int]]:
        """The sets in tiles: two tiles together fit the budget (one set per tile at least)."""
        if self._budget is None or not self.sets:
            return [self.sets]
        probe = self.fresh(self.sets[0])
        self._first[self.sets[0]] = probe  # the size of a set, learnt from the first one, which is kept
        per_set = max(1, probe.element_size() * probe.nelement())
        size = max(1, int(self._budget // (2 * per_set)))
        return [self.sets[k : k + size] for k in range(0, len(self.sets), size)]

    def sweep(self, want: Callable[[int, int], bool]) -> Any:
        """Yield ``(a, b, X_a, X_b)`` for every pair of sets ``want`` names, loading each row tile once."""
        chunks = self.chunks()
        for i, rows in enumerate(chunks):
            row = {a: self.fresh(a) for a in rows}
            for cols in chunks[i:]:
                col = row if cols is rows else {b: self.fresh(b) for b in cols}
                for k, a in enumerate(rows):
                    for b in cols[k:] if cols is rows else cols:  # a diagonal tile: each pair once
                        if want(a, b):
                            yield a, b, row[a], col[b]
                        if b != a and want(b, a):
                            yield b, a, col[b], row[a]
                del col
            del row


def train_hinge_pairs(trainer: Any, load: Loader, sizes: Sequence[int], pairs: Sequence[tuple[int, int]],
                      seeds: Sequence[int], *, budget_bytes: int | None = None) -> list[CAV]:
    """One CAV per (positive, negative) pair of sets, from one batched kernel SGD.

    ``trainer`` carries the SGD's settings (:class:`~pytest_tcav.engine.trainers.HingeSGDTrainer`);
    ``sizes[a]`` is set ``a``'s number of examples; ``budget_bytes`` bounds the
    activations held at once (``None``: all sets at once).  A CAV does not
    depend on the budget nor on which other pairs are trained with it, bit for bit.
    """
    if not pairs:
        return []
    rngs = [np.random.default_rng(seed) for seed in seeds]
    splits = [balanced_split(sizes[a], sizes[b], trainer.test_fraction, rng) for (a, b), rng in zip(pairs, rngs)]
    wanted = {(a, b) for a, b in pairs} | {(a, a) for a, _ in pairs} | {(b, b) for _, b in pairs}
    tiles = _Tiles(load, [s for pair in pairs for s in pair], budget_bytes)
    blocks: dict[tuple[int, int], np.ndarray] = {}
    for a, b, x_a, x_b in tiles.sweep(lambda a, b: (a, b) in wanted):
        blocks[(a, b)] = (x_a @ (x_a if a == b else x_b).T).double().numpy()

    def gram(a: int, b: int) -> np.ndarray:
        cross = blocks[(a, b)]
        return np.block([[blocks[(a, a)], cross], [cross.T, blocks[(b, b)]]])

    size = max(len(split.train) for split in splits)
    kernels = np.zeros((len(pairs), size, size))
    labels = np.zeros((len(pairs), size))
    n_valid = np.zeros(len(pairs), dtype=np.int64)
    for k, ((a, b), split) in enumerate(zip(pairs, splits)):
        n = len(split.train)
        kernels[k, :n, :n] = gram(a, b)[np.ix_(split.train, split.train)]
        labels[k, :n] = split.labels[split.train]
        n_valid[k] = n
    coef, scale, intercept = kernel_hinge_sgd(kernels, labels, n_valid, rngs, trainer.alpha, trainer.max_iter,
                                              trainer.tol, trainer.n_iter_no_change, trainer.l1_ratio)
    del kernels
    cavs: list[CAV | None] = [None] * len(pairs)
    todo: dict[tuple[int, int], list[int]] = {}
    for k, pair in enumerate(pairs):
        todo.setdefault(pair, []).append(k)
    for a, b, x_a, x_b in tiles.sweep(lambda a, b: (a, b) in todo):
        for k in todo[(a, b)]:
            split = splits[k]
            n, n_a = len(split.train), sizes[a]
            scaled = coef[k, :n] * scale[k]
            coefficients = np.zeros(n_a + sizes[b])
            coefficients[split.train] = scaled
            c = torch.as_tensor(coefficients, dtype=torch.float32)
            weights = c[:n_a] @ x_a + c[n_a:] @ x_b
            margins = gram(a, b)[np.ix_(split.test, split.train)] @ scaled + intercept[k]
            accuracy = float(np.mean(np.where(margins > 0, 1.0, -1.0) == split.labels[split.test]))
            cavs[k] = CAV(weights, float(intercept[k]), accuracy)
    return [cav for cav in cavs if cav is not None]

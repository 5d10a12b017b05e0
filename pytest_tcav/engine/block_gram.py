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

Every block is computed from each set at a 64-byte aligned address (copied
when it is not), so a CAV's bits do not depend on which sets were
loaded with it, where they came from (a forward pass or the disk cache), or
which worker trained it.

Products of two sets of tens of examples each are small matrix products
over 10^5 features, which run at a third of a large product's speed.  So the
engine asks for blocks by *tiles*: the sets cut into fixed runs of at most
``TILE_ROWS`` examples (:func:`gram_tiles`), and all blocks between two tiles
come from one product, a slice of ``FEATURE_SLICE`` features at a time (the
slices of the tile's sets copied side by side, so that no tile is ever held
whole twice), summed in float64 in a fixed order.  A block's bits then depend
on the two tiles it lies in, which is why the engine's CAV keys name them;
they still do not depend on the group, the budget or the worker.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from pytest_tcav.engine.cav import CAV, balanced_split
from pytest_tcav.engine.freed_memory import release_freed_memory
from pytest_tcav.engine.kernel_sgd import kernel_hinge_sgd

#: Loads set ``a``'s activations (examples x features) when asked.
Loader = Callable[[int], torch.Tensor]
#: Examples per tile of sets whose Gram blocks come from one product (two tiles of a 100,000-feature layer: 128 MB).
TILE_ROWS = 160
#: Features per slice of a tile product: the slices of two tiles (2 x 160 x 8192 floats, 10 MB) are copied at once.
FEATURE_SLICE = 8192


def gram_tiles(sizes: Sequence[int], start: int = 0) -> list[list[int]]:
    """Sets ``start``, ``start + 1``, ... in runs of at most ``TILE_ROWS`` examples (one set at least).

    Depends on the sets' sizes only, so every worker and every group cuts a
    list of sets the same way.
    """
    tiles: list[list[int]] = []
    rows = 0
    for a in range(start, len(sizes)):
        if not tiles or rows + sizes[a] > TILE_ROWS:
            tiles.append([])
            rows = 0
        tiles[-1].append(a)
        rows += sizes[a]
    return tiles


class _Tiles:
    """Sets loaded a tile at a time, each as its own float32 allocation."""

    def __init__(self, load: Loader, budget_bytes: int | None) -> None:
        self._load = load
        self._budget = budget_bytes
        self._first: dict[int, torch.Tensor] = {}

    def fresh(self, a: int) -> torch.Tensor:
        first = self._first.pop(a, None)
        if first is not None:
            return first
        x = self._load(a).float().contiguous()
        # used as it is when 64-byte aligned, as torch allocates and the disk cache reads; copied (to such
        # an allocation) otherwise: the products' rounding can depend on alignment, and a CAV must not
        # depend on where its sets came from
        return x if x.data_ptr() % 64 == 0 else x.clone()

    def chunks(self, sets: list[int]) -> list[list[int]]:
        """``sets`` in tiles: two tiles together fit the budget (one set per tile at least)."""
        if self._budget is None or not sets:
            return [sets]
        probe = self.fresh(sets[0])
        self._first[sets[0]] = probe  # the size of a set, learnt from the first one, which is kept
        per_set = max(1, probe.element_size() * probe.nelement())
        size = max(1, int(self._budget // (2 * per_set)))
        return [sets[k : k + size] for k in range(0, len(sets), size)]

    def sweep(self, wanted: set[tuple[int, int]]) -> Any:
        """Yield ``(a, b, X_a, X_b)`` for every pair in ``wanted``, loading only tiles that hold one."""
        chunks = self.chunks(sorted({s for pair in wanted for s in pair}))
        tile_of = {a: t for t, chunk in enumerate(chunks) for a in chunk}
        by_tiles: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for a, b in sorted(wanted):
            ta, tb = tile_of[a], tile_of[b]
            by_tiles.setdefault((min(ta, tb), max(ta, tb)), []).append((a, b))
        for i, rows in enumerate(chunks):
            cols_wanted = sorted(j for t, j in by_tiles if t == i)
            if not cols_wanted:
                continue
            row = {a: self.fresh(a) for a in rows}
            for j in cols_wanted:
                both = row if j == i else row | {b: self.fresh(b) for b in chunks[j]}
                for a, b in by_tiles[(i, j)]:
                    yield a, b, both[a], both[b]
                freed = sum(x.nbytes for b, x in both.items() if b not in row)
                del both
                release_freed_memory(freed=freed)
            del row


class _SideBySide:
    """A slice of features of a tile's sets, joined below each other into one buffer reused for every slice.

    The product of two tiles sees each slice as a fresh ``torch.cat`` of the
    sets' slices would give it (one contiguous matrix of the same shape and
    values), so its bits are the same.  Joining into the one buffer
    (``torch.cat(out=)``) spares a fresh allocation, and its page faults, per
    slice (368 slices at the 10 x 20 significance shape): the shape's tile
    products took 0.250 s against 0.265 s for fresh joins on a quiet machine,
    and 1.00 s against 1.24 s with two processes spinning on the 2 cores
    (``benchmarks/tile_slices.py``; a copy with numpy on one thread took 0.52 s quiet).
    """

    def __init__(self, sets: Sequence[torch.Tensor]) -> None:
        self._sets = list(sets)
        self._n = sum(len(x) for x in sets)
        self._buffer = torch.empty(self._n * FEATURE_SLICE, dtype=torch.float32)

    def slice(self, start: int, stop: int) -> torch.Tensor:
        """Features ``start:stop`` of every set, the sets below each other (at most ``FEATURE_SLICE`` wide)."""
        out = self._buffer[: self._n * (stop - start)].view(self._n, stop - start)
        return torch.cat([x[:, start:stop] for x in self._sets], out=out)


def _block(x_a: torch.Tensor, x_b: torch.Tensor) -> np.ndarray:
    """``X_a X_b^T`` in float64, from the float32 product with the set of more examples on the left.

    MKL's float32 product of a few rows (5 to 7, 9 to 11) against twelve or
    more rounds differently with one thread than with two, so a CAV between
    a small concept set and larger random sets came out in different bits in
    a serial run and under pytest-xdist (whose workers run one thread each on
    two cores).  With the larger operand on the left no such shape occurs
    (``tests/engine/test_block_gram.py`` checks every shape up to 32 x 32).
    """
    if len(x_a) < len(x_b):
        return (x_b @ x_a.T).double().numpy().T
    return (x_a @ x_b.T).double().numpy()


def train_hinge_pairs(trainer: Any, load: Loader, sizes: Sequence[int], pairs: Sequence[tuple[int, int]],
                      seeds: Sequence[int], *, budget_bytes: int | None = None,
                      blocks: dict[Any, Any] | None = None,
                      gram_tiles_of: Sequence[Sequence[int]] | None = None) -> list[CAV]:
    """One CAV per (positive, negative) pair of sets, from one batched kernel SGD.

    ``trainer`` carries the SGD's settings (:class:`~pytest_tcav.engine.trainers.HingeSGDTrainer`);
    ``sizes[a]`` is set ``a``'s number of examples; ``budget_bytes`` bounds the
    activations held at once (``None``: all sets at once); ``blocks`` keeps the
    Gram blocks between calls on the same sets (the groups of one layer).  A
    CAV does not depend on the budget nor on which other pairs are trained
    with it, bit for bit.  ``gram_tiles_of``: the tiles (a partition of the
    sets) whose blocks come from one product each (see the module's
    docstring); ``None`` computes each block on its own.
    """
    if not pairs:
        return []
    rngs = [np.random.default_rng(seed) for seed in seeds]
    splits = [balanced_split(sizes[a], sizes[b], trainer.test_fraction, rng) for (a, b), rng in zip(pairs, rngs)]
    blocks = {} if blocks is None else blocks
    tiles = _Tiles(load, budget_bytes)
    if gram_tiles_of is None:
        needed = {(a, b) for a, b in pairs} | {(a, a) for a, _ in pairs} | {(b, b) for _, b in pairs}
        for a, b, x_a, x_b in tiles.sweep(needed - blocks.keys()):
            blocks[(a, b)] = _block(x_a, x_a if a == b else x_b)
    else:
        _tile_blocks(tiles, gram_tiles_of, pairs, blocks)

    def gram(a: int, b: int) -> np.ndarray:
        cross = blocks[(a, b)] if (a, b) in blocks else blocks[(b, a)].T
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
    # weights = c_a @ X_a + c_b @ X_b: each set loaded once, each term kept until its partner comes
    # (float addition commutes, so the order the two terms arrive in does not change a bit)
    coefficients: list[torch.Tensor] = []
    accuracies: list[float] = []
    for k, ((a, b), split) in enumerate(zip(pairs, splits)):
        scaled = coef[k, : len(split.train)] * scale[k]
        full = np.zeros(sizes[a] + sizes[b])
        full[split.train] = scaled
        coefficients.append(torch.as_tensor(full, dtype=torch.float32))
        margins = gram(a, b)[np.ix_(split.test, split.train)] @ scaled + intercept[k]
        accuracies.append(float(np.mean(np.where(margins > 0, 1.0, -1.0) == split.labels[split.test])))
    uses: dict[int, list[tuple[int, bool]]] = {}
    for k, (a, b) in enumerate(pairs):
        uses.setdefault(a, []).append((k, True))
        uses.setdefault(b, []).append((k, False))
    partial: dict[int, torch.Tensor] = {}
    weights: list[torch.Tensor | None] = [None] * len(pairs)
    for s in sorted(uses):
        x = tiles.fresh(s)
        for k, first in uses[s]:
            n_a = sizes[pairs[k][0]]
            term = coefficients[k][:n_a] @ x if first else coefficients[k][n_a:] @ x
            other = partial.pop(k, None)
            if other is None:
                partial[k] = term
            else:
                weights[k] = other + term
        freed = x.nbytes
        del x
        # the terms allocated in between keep the next set from reusing x's block: without this the
        # 50 x 50 shape of docs/scaling.md peaked at 3252 MiB instead of 2903 (1.6 s of trims at 50 x 20)
        release_freed_memory(freed=freed)
    return [CAV(w, float(intercept[k]), accuracies[k]) for k, w in enumerate(weights) if w is not None]


def _tile_blocks(sets: _Tiles, tiles: Sequence[Sequence[int]], pairs: Sequence[tuple[int, int]],
                 blocks: dict[Any, Any]) -> None:
    """The blocks ``pairs`` need: between two sets, from their tiles' product; a set's own, from its own.

    ``blocks[(a, b)]`` is filled for ``a`` in the first tile and ``b`` in the
    second (tiles in order; within one tile, ``a`` before ``b``), the other
    orientation being its transpose, and ``blocks[(a, a)]`` from set ``a``
    alone, as without tiles: a CAV of the concept needs its random set's own
    block, and computing it within the random set's tile would cost a whole
    tile's product where the random pairs are cached.
    ``blocks[("tiles", i, j)]`` marks a product done, for the next group.
    """
    tile_of = {a: t for t, tile in enumerate(tiles) for a in tile}
    wanted = {(min(tile_of[a], tile_of[b]), max(tile_of[a], tile_of[b])) for a, b in pairs}
    for i, j in sorted(wanted):
        if ("tiles", i, j) in blocks:
            continue
        xs = {a: sets.fresh(a) for a in {*tiles[i], *tiles[j]}}
        for a, x in xs.items():
            if (a, a) not in blocks:
                blocks[(a, a)] = _block(x, x)
        rows_i, rows_j = ([len(xs[a]) for a in tiles[t]] for t in (i, j))
        if len(tiles[i]) == len(tiles[j]) == 1:  # the concept's and a set of over half a tile: no slices needed
            product = _block(xs[tiles[i][0]], xs[tiles[j][0]])
        else:
            product = np.zeros((sum(rows_i), sum(rows_j)))
            width = int(next(iter(xs.values())).shape[1])
            left_slices = _SideBySide([xs[a] for a in tiles[i]])
            right_slices = left_slices if i == j else _SideBySide([xs[b] for b in tiles[j]])
            for start in range(0, width, FEATURE_SLICE):
                left = left_slices.slice(start, min(width, start + FEATURE_SLICE))
                right = left if i == j else right_slices.slice(start, min(width, start + FEATURE_SLICE))
                product += _block(left, right)  # the larger tile on the left, as every block
                del left, right
            del left_slices, right_slices
        freed = sum(x.nbytes for x in xs.values())
        del xs
        offsets_i, offsets_j = np.cumsum([0, *rows_i]), np.cumsum([0, *rows_j])
        for p, a in enumerate(tiles[i]):
            for q, b in enumerate(tiles[j]):
                if i != j or p < q:
                    blocks[(a, b)] = product[offsets_i[p] : offsets_i[p + 1], offsets_j[q] : offsets_j[q + 1]]
        blocks[("tiles", i, j)] = None
        release_freed_memory(freed=freed)

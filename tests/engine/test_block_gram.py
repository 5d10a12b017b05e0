"""CAVs trained from Gram blocks with sets loaded a few at a time: the same CAVs, bit for bit."""

from __future__ import annotations

import pytest
import torch

from pytest_tcav.engine.trainers import HingeSGDTrainer, MeanDifferenceTrainer


def sets(n: int = 7, examples: int = 12, features: int = 3000) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(examples, features, generator=gen) + k * 0.05 for k in range(n)]


def all_pairs(n: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(n) for j in range(i + 1, n)] + [(3, 0), (5, 1)]  # and two reversed


def same(a, b) -> bool:
    return all(torch.equal(x.weights, y.weights) and x.intercept == y.intercept and x.accuracy == y.accuracy
               for x, y in zip(a, b, strict=True))


@pytest.mark.slow  # over a second
def test_budget_groups_and_sources_do_not_change_a_bit() -> None:
    xs = sets()
    pairs = all_pairs(len(xs))
    seeds = list(range(100, 100 + len(pairs)))
    trainer = HingeSGDTrainer()
    sizes = [len(x) for x in xs]
    features = torch.cat(xs)
    groups = [torch.arange(12 * k, 12 * (k + 1)) for k in range(len(xs))]
    reference = trainer.train_many(features, groups, pairs, seeds)

    one_set = xs[0].element_size() * xs[0].nelement()
    for budget in (None, 2 * one_set, 5 * one_set):  # every set at once, one per tile, two per tile
        assert same(trainer.train_sets(lambda a: xs[a], sizes, pairs, seeds, budget_bytes=budget), reference)

    # in two groups sharing their Gram blocks, from views at odd offsets (copied to aligned memory)
    padded = torch.cat([torch.zeros(1, xs[0].shape[1] + 3)] + [torch.nn.functional.pad(x, (3, 0)) for x in xs])
    def load(a: int) -> torch.Tensor:
        return padded[1 + 12 * a : 1 + 12 * (a + 1), 3:]

    blocks: dict = {}
    first = trainer.train_sets(load, sizes, pairs[:9], seeds[:9], budget_bytes=2 * one_set, blocks=blocks)
    assert blocks  # kept for the next group
    second = trainer.train_sets(load, sizes, pairs[9:], seeds[9:], budget_bytes=3 * one_set, blocks=blocks)
    assert same(first + second, reference)


def test_sets_are_loaded_within_the_budget() -> None:
    xs = sets(n=8)
    pairs = all_pairs(len(xs))
    one_set = xs[0].element_size() * xs[0].nelement()
    loads: list[int] = []
    HingeSGDTrainer().train_sets(lambda a: loads.append(a) or xs[a] + 0, [12] * 8, pairs, list(range(len(pairs))),
                                 budget_bytes=4 * one_set)
    assert set(loads) == set(range(8))
    # two tiles of two sets: more loads than sets, fewer than one per block
    assert len(xs) < len(loads) < len(pairs) * 2


def test_a_trainer_without_blocks_trains_through_train_many() -> None:
    xs = sets(n=4)
    pairs = [(0, 1), (2, 3), (3, 1)]
    trainer = MeanDifferenceTrainer()
    loaded = trainer.train_sets(lambda a: xs[a], [12] * 4, pairs, [1, 2, 3], budget_bytes=1)
    direct = [trainer.train(xs[a], xs[b], seed) for (a, b), seed in zip(pairs, [1, 2, 3])]
    assert same(loaded, direct)


@pytest.mark.slow  # over a second
def test_gram_blocks_do_not_depend_on_the_thread_count() -> None:
    """A serial run and xdist workers (one thread each) must train the same CAVs, for sets of any sizes.

    MKL's product of 5-7 or 9-11 rows against 12 or more rounds differently
    with one thread than with two; block_gram puts the larger set on the left.
    """
    from pytest_tcav.engine.block_gram import _block

    saved = torch.get_num_threads()
    gen = torch.Generator().manual_seed(5)
    try:
        for rows_a in range(1, 33):
            for rows_b in range(1, 33):
                a, b = torch.randn(rows_a, 2048, generator=gen), torch.randn(rows_b, 2048, generator=gen)
                torch.set_num_threads(2)
                two = _block(a, b)
                torch.set_num_threads(1)
                one = _block(a, b)
                assert (one == two).all(), (rows_a, rows_b)
        xs = [torch.randn(n, 3000, generator=gen) for n in (10, 30, 30, 7)]
        pairs = [(0, 1), (2, 0), (1, 2), (3, 1), (0, 3)]
        cavs = []
        for threads in (2, 1):
            torch.set_num_threads(threads)
            cavs.append(HingeSGDTrainer().train_sets(lambda k: xs[k], [len(x) for x in xs], pairs, [1, 2, 3, 4, 5]))
        assert same(*cavs)
    finally:
        torch.set_num_threads(saved)


# -- tiles: the blocks between two runs of sets from one product ------------------------------------------


def test_gram_tiles_cut_runs_of_sets_by_examples() -> None:
    from pytest_tcav.engine.block_gram import TILE_ROWS, gram_tiles

    per_tile = TILE_ROWS // 30
    assert gram_tiles([30] * 20, start=1) == [list(range(k, min(20, k + per_tile))) for k in range(1, 20, per_tile)]
    assert all(len(tile) * 30 <= TILE_ROWS for tile in gram_tiles([30] * 20, start=1))
    assert gram_tiles([TILE_ROWS + 5, 10, 10], start=0) == [[0], [1, 2]]  # a set larger than a tile is one
    assert gram_tiles([30], start=1) == []
    assert HingeSGDTrainer().gram_tiles([30] * 4) == [[0], [1, 2, 3]]  # the concept alone
    assert HingeSGDTrainer().gram_tiles([TILE_ROWS // 2 + 1] * 4) is None  # every random set alone: no tiles
    assert HingeSGDTrainer().gram_tiles([30, 30]) is None
    assert MeanDifferenceTrainer().gram_tiles([30] * 4) is None


def test_tiled_blocks_are_the_products_of_their_sets() -> None:
    import numpy as np

    from pytest_tcav.engine import block_gram

    xs = sets(n=6, features=block_gram.FEATURE_SLICE * 2 + 77)  # three slices, the last a short one
    tiles = [[0], [1, 2, 3], [4, 5]]
    blocks: dict = {}
    pairs = [(0, 1), (2, 5), (4, 3), (5, 4)]
    HingeSGDTrainer().train_sets(lambda a: xs[a], [12] * 6, pairs, [1, 2, 3, 4], blocks=blocks, gram_tiles_of=tiles)
    for a, b in [(0, 1), (0, 0), (2, 5), (2, 4), (3, 3), (3, 4), (4, 5), (5, 5)]:
        exact = (xs[a].double() @ xs[b].double().T).numpy()
        np.testing.assert_allclose(blocks[(a, b)], exact, rtol=1e-5, atol=1e-3)
    assert ("tiles", 1, 2) in blocks and ("tiles", 0, 2) not in blocks  # only the products the pairs need
    assert (1, 3) not in blocks  # within tile 1 no pair is asked for
    own = xs[3] @ xs[3].T
    assert np.array_equal(blocks[(3, 3)], own.double().numpy())  # a set's own block from its own product


@pytest.mark.slow  # over a second
def test_tiled_cavs_do_not_depend_on_groups_budget_or_sources_bit_for_bit() -> None:
    xs = sets(n=7)
    pairs = all_pairs(len(xs))
    seeds = list(range(200, 200 + len(pairs)))
    trainer = HingeSGDTrainer()
    sizes = [len(x) for x in xs]
    tiles = [[0], [1, 2, 3], [4, 5, 6]]
    reference = trainer.train_sets(lambda a: xs[a], sizes, pairs, seeds, gram_tiles_of=tiles)
    one_set = xs[0].element_size() * xs[0].nelement()
    padded = torch.cat([torch.zeros(1, xs[0].shape[1] + 3)] + [torch.nn.functional.pad(x, (3, 0)) for x in xs])

    def load(a: int) -> torch.Tensor:  # views at odd offsets
        return padded[1 + 12 * a : 1 + 12 * (a + 1), 3:]

    blocks: dict = {}
    first = trainer.train_sets(load, sizes, pairs[:5], seeds[:5], budget_bytes=2 * one_set, blocks=blocks,
                               gram_tiles_of=tiles)
    second = trainer.train_sets(load, sizes, pairs[5:], seeds[5:], budget_bytes=one_set, blocks=blocks,
                                gram_tiles_of=tiles)
    assert same(first + second, reference)
    alone = [trainer.train_sets(lambda a: xs[a], sizes, [pair], [seed], gram_tiles_of=tiles)[0]
             for pair, seed in zip(pairs[::4], seeds[::4])]
    assert same(alone, reference[::4])


def test_tiled_cavs_do_not_depend_on_the_thread_count() -> None:
    """Tiles of many rows against a concept of a few: the products keep the larger operand on the left."""
    from pytest_tcav.engine.block_gram import _block

    saved = torch.get_num_threads()
    gen = torch.Generator().manual_seed(6)
    try:
        for rows_a in (1, 5, 7, 10, 11, 30, 240, 480):
            for rows_b in (1, 5, 9, 12, 30, 240):
                a, b = torch.randn(rows_a, 1024, generator=gen), torch.randn(rows_b, 1024, generator=gen)
                torch.set_num_threads(2)
                two = _block(a, b)
                torch.set_num_threads(1)
                assert (_block(a, b) == two).all(), (rows_a, rows_b)
        xs = [torch.randn(7, 3000, generator=gen)] + [torch.randn(12, 3000, generator=gen) for _ in range(5)]
        tiles = [[0], [1, 2, 3], [4, 5]]
        pairs = [(0, 1), (0, 4), (2, 1), (5, 3), (4, 5)]
        cavs = []
        for threads in (2, 1):
            torch.set_num_threads(threads)
            cavs.append(HingeSGDTrainer().train_sets(lambda k: xs[k], [len(x) for x in xs], pairs, [1, 2, 3, 4, 5],
                                                     gram_tiles_of=tiles))
        assert same(*cavs)
    finally:
        torch.set_num_threads(saved)


def test_two_tiles_of_one_set_each_give_the_direct_product() -> None:
    from pytest_tcav.engine.block_gram import _block

    xs = sets(n=3, examples=12, features=20000)
    blocks: dict = {}
    HingeSGDTrainer().train_sets(lambda a: xs[a], [12] * 3, [(0, 2), (1, 2)], [1, 2], blocks=blocks,
                                 gram_tiles_of=[[0], [1], [2]])
    assert (blocks[(0, 2)] == _block(xs[0], xs[2])).all() and (blocks[(1, 2)] == _block(xs[1], xs[2])).all()


def test_slices_copied_side_by_side_are_what_torch_cat_gave_and_multiply_alike() -> None:
    """Each slice of a tile's sets (joined into one reused buffer) equals torch.cat's, as does its product.

    Sets of different sizes, a width that leaves a last slice narrower than the
    others, and a tile product summed over the slices as ``_tile_blocks`` does.
    """
    import numpy as np

    from pytest_tcav.engine.block_gram import FEATURE_SLICE, _block, _SideBySide

    gen = torch.Generator().manual_seed(3)
    width = 2 * FEATURE_SLICE + 77
    left_sets = [torch.relu(torch.randn(n, width, generator=gen)) for n in (20, 7, 13)]
    right_sets = [torch.relu(torch.randn(n, width, generator=gen)) for n in (5, 20)]
    left_slices, right_slices = _SideBySide(left_sets), _SideBySide(right_sets)
    joined_sum = np.zeros((40, 25))
    buffered_sum = np.zeros((40, 25))
    for start in range(0, width, FEATURE_SLICE):
        stop = min(width, start + FEATURE_SLICE)
        joined_left = torch.cat([x[:, start:stop] for x in left_sets])
        joined_right = torch.cat([x[:, start:stop] for x in right_sets])
        left, right = left_slices.slice(start, stop), right_slices.slice(start, stop)
        assert left.is_contiguous() and left.data_ptr() % 64 == 0 and torch.equal(left, joined_left)
        assert right.is_contiguous() and right.data_ptr() % 64 == 0 and torch.equal(right, joined_right)
        joined_sum += _block(joined_left, joined_right)
        buffered_sum += _block(left, right)
    assert np.array_equal(joined_sum, buffered_sum)

"""CAVs trained from Gram blocks with sets loaded a few at a time: the same CAVs, bit for bit."""

from __future__ import annotations

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

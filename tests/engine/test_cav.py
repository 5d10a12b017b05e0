"""The CAV itself: the balanced, seeded train/test split of two sets, and a flipped CAV (trainers are in
test_trainers.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pytest_tcav import CAV, ConfigurationError, InsufficientDataError
from pytest_tcav.engine.cav import balanced_split


def test_split_is_balanced_disjoint_and_holds_out_a_third():
    split = balanced_split(20, 26, 0.33, np.random.default_rng(0))
    n_test = int(np.ceil(0.33 * 20))
    assert set(split.train).isdisjoint(split.test)
    test_labels = split.labels[split.test]
    train_labels = split.labels[split.train]
    assert (test_labels == 1).sum() == (test_labels == -1).sum() == n_test
    assert (train_labels == 1).sum() == (train_labels == -1).sum() == 20 - n_test
    # indices refer to [positive (20), negative (26)]; the larger set is subsampled
    assert all(i < 20 for i in split.train[split.labels[split.train] > 0])
    assert all(20 <= i < 46 for i in split.train[split.labels[split.train] < 0])
    assert len(split.labels) == 46


def test_split_is_seeded():
    first = balanced_split(30, 30, 0.33, np.random.default_rng(7))
    again = balanced_split(30, 30, 0.33, np.random.default_rng(7))
    other = balanced_split(30, 30, 0.33, np.random.default_rng(8))
    assert np.array_equal(first.train, again.train) and np.array_equal(first.test, again.test)
    assert not np.array_equal(first.test, other.test)


def test_split_needs_enough_examples_and_a_valid_fraction():
    with pytest.raises(InsufficientDataError, match="at least 5 examples in each set.*got 4 and 30"):
        balanced_split(4, 30, 0.33, np.random.default_rng(0))
    with pytest.raises(ConfigurationError, match="test_fraction"):
        balanced_split(10, 10, 1.0, np.random.default_rng(0))


def test_flipped_cav_is_the_opposite_boundary():
    cav = CAV(torch.tensor([1.0, -2.0]), 0.5, 0.9)
    flipped = cav.flipped()
    assert torch.equal(flipped.weights, -cav.weights) and flipped.intercept == -0.5 and flipped.accuracy == 0.9

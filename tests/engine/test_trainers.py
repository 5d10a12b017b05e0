"""CAV training: the default hinge-SGD trainer and its equivalence to scikit-learn, other trainers.

The default trainer reimplements scikit-learn's ``SGDClassifier(loss="hinge",
alpha=0.01, max_iter=1000, tol=1e-3)`` on Gram matrices.  It cannot match
scikit-learn bit for bit (the shuffle comes from another generator), so the
equivalence is checked in distribution: over seeds, its held-out accuracy and
its agreement with scikit-learn's weights are those of scikit-learn with
another random state.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pytest_tcav import (
    CAVTrainer,
    ConfigurationError,
    HingeSGDTrainer,
    LogisticTrainer,
    MeanDifferenceTrainer,
    SklearnSGDTrainer,
)
from pytest_tcav.engine.cav import balanced_split
from pytest_tcav.engine.trainers import make_trainer


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float(a @ b / (a.norm() * b.norm()))


def _activation_like(n: int, features: int, shift: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two non-negative 'activation' sets differing by a sparse mean shift, overlapping unless shift is large."""
    gen = torch.Generator().manual_seed(seed)
    direction = (torch.rand(features, generator=gen) < 0.2).float()
    base = torch.rand(features, generator=gen)
    pos = torch.relu(base + shift * direction + torch.randn(n, features, generator=gen))
    neg = torch.relu(base + torch.randn(n, features, generator=gen))
    return pos, neg


# -- the default trainer ---------------------------------------------------------------------


def test_hinge_sgd_is_deterministic_bit_for_bit():
    pos, neg = _activation_like(20, 300, 0.5, seed=1)
    trainer = HingeSGDTrainer()
    a = trainer.train(pos, neg, seed=5)
    b = trainer.train(pos, neg, seed=5)
    c = trainer.train(pos, neg, seed=6)
    assert torch.equal(a.weights, b.weights) and a.intercept == b.intercept and a.accuracy == b.accuracy
    assert not torch.equal(a.weights, c.weights)


def test_batched_training_equals_training_each_pair_alone():
    """A CAV must not depend on which other pairs share its batch (nor on cache history)."""
    gen = torch.Generator().manual_seed(0)
    sets = [torch.relu(torch.randn(12 + k, 200, generator=gen) + 0.3 * k) for k in range(5)]
    features = torch.cat(sets)
    offsets = np.cumsum([0] + [len(s) for s in sets])
    groups = [torch.arange(offsets[k], offsets[k + 1]) for k in range(len(sets))]
    pairs = [(0, 1), (2, 3), (1, 4), (0, 4), (3, 2)]
    seeds = [101, 102, 103, 104, 105]
    trainer = HingeSGDTrainer()
    batched = trainer.train_many(features, groups, pairs, seeds)
    for (a, b), seed, cav in zip(pairs, seeds, batched):
        alone = trainer.train(sets[a], sets[b], seed)
        in_other_batch = trainer.train_many(features, groups, [(4, 0), (a, b)], [7, seed])[1]
        for other in (alone, in_other_batch):
            assert torch.equal(cav.weights, other.weights)
            assert cav.intercept == other.intercept and cav.accuracy == other.accuracy


def test_swapping_labels_negates_the_classifier_exactly():
    pos, neg = _activation_like(15, 100, 0.7, seed=2)
    x = torch.cat([pos, neg])
    y = np.r_[np.ones(15), -np.ones(15)]
    trainer = HingeSGDTrainer()
    w, b = trainer.fit(x, y, np.random.default_rng(3))
    w_swapped, b_swapped = trainer.fit(x, -y, np.random.default_rng(3))
    assert torch.equal(w_swapped, -w) and b_swapped == -b


def test_separable_sets_are_separated():
    pos, neg = _activation_like(20, 200, 4.0, seed=3)
    for trainer in (HingeSGDTrainer(), SklearnSGDTrainer(), LogisticTrainer(), MeanDifferenceTrainer()):
        accuracies = [trainer.train(pos, neg, seed).accuracy for seed in range(3)]
        assert min(accuracies) >= 0.95, (trainer.name, accuracies)
        cav = trainer.train(pos, neg, 0)
        assert float(cav.weights @ (pos.mean(0) - neg.mean(0))) > 0, trainer.name  # points to the positive set


def test_hinge_sgd_matches_scikit_learn_in_distribution():
    """Accuracy and direction of our CAVs are those of scikit-learn's with another random state."""
    pos, neg = _activation_like(30, 400, 0.35, seed=4)  # overlapping: accuracy well below 1
    ours, theirs = HingeSGDTrainer(), SklearnSGDTrainer()
    acc_ours, acc_sk, cos_ours_sk, cos_sk_sk = [], [], [], []
    for seed in range(20):
        a = ours.train(pos, neg, seed)  # same seed: same split for both
        b = theirs.train(pos, neg, seed)
        # scikit-learn on the same split with a different shuffle
        rng = np.random.default_rng(seed)
        split = balanced_split(30, 30, 0.33, rng)
        stacked = torch.cat([pos, neg])
        w_other, _ = theirs.fit(stacked[torch.as_tensor(split.train)], split.labels[split.train],
                                np.random.default_rng(10_000 + seed))
        acc_ours.append(a.accuracy)
        acc_sk.append(b.accuracy)
        cos_ours_sk.append(_cosine(a.weights, b.weights))
        cos_sk_sk.append(_cosine(w_other, b.weights))
    print(f"held-out accuracy: ours {np.mean(acc_ours):.3f}, scikit-learn {np.mean(acc_sk):.3f}; "
          f"cosine to scikit-learn: ours {np.mean(cos_ours_sk):.3f}, scikit-learn reseeded {np.mean(cos_sk_sk):.3f}")
    assert 0.6 < np.mean(acc_sk) < 0.99  # the comparison is not trivial
    assert abs(np.mean(acc_ours) - np.mean(acc_sk)) <= 0.06
    assert np.mean(cos_ours_sk) >= np.mean(cos_sk_sk) - 0.05
    assert min(cos_ours_sk) > 0.5


def test_hinge_sgd_validates_alpha():
    with pytest.raises(ConfigurationError, match="alpha"):
        HingeSGDTrainer(alpha=0.0)


# -- other trainers and the interface ----------------------------------------------------------


def test_mean_difference_is_the_difference_of_training_means():
    pos, neg = _activation_like(10, 20, 1.0, seed=5)
    x = torch.cat([pos, neg])
    y = np.r_[np.ones(10), -np.ones(10)]
    w, b = MeanDifferenceTrainer().fit(x, y, np.random.default_rng(0))
    expected = pos.double().mean(0) - neg.double().mean(0)
    assert torch.allclose(w.double(), expected, atol=1e-6)
    midpoint = (pos.double().mean(0) + neg.double().mean(0)) / 2
    assert float(w.double() @ midpoint) + b == pytest.approx(0.0, abs=1e-4)


def test_trainers_by_name_and_settings():
    assert isinstance(make_trainer(None), HingeSGDTrainer)
    assert isinstance(make_trainer("logistic"), LogisticTrainer)
    assert isinstance(make_trainer("mean_difference"), MeanDifferenceTrainer)
    trainer = HingeSGDTrainer(alpha=0.02)
    assert make_trainer(trainer) is trainer
    assert trainer.settings()["alpha"] == 0.02 and trainer.settings()["trainer"] == "hinge_sgd"
    assert HingeSGDTrainer().settings() != HingeSGDTrainer(alpha=0.02).settings()
    with pytest.raises(ConfigurationError, match="unknown CAV trainer 'svm'"):
        make_trainer("svm")


def test_a_trainer_needs_only_fit():
    class Centroid(CAVTrainer):
        """Points from the negative centroid to the positive one, through the origin."""

        name = "centroid"

        def fit(self, x, y, rng):
            w = x[torch.as_tensor(y > 0)].mean(0) - x[torch.as_tensor(y < 0)].mean(0)
            return w, 0.0

    pos, neg = _activation_like(12, 30, 3.0, seed=6)
    features = torch.cat([pos, neg])
    groups = [torch.arange(12), torch.arange(12, 24)]
    (cav,) = Centroid().train_many(features, groups, [(0, 1)], [0])
    assert cav.weights.shape == (30,) and cav.intercept == 0.0 and 0.0 <= cav.accuracy <= 1.0
    assert float(cav.weights @ (pos.mean(0) - neg.mean(0))) > 0

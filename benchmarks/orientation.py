"""Is the default CAV trainer antisymmetric, and does its orientation bias the significance test?

Question: for two exchangeable random sets ``a`` and ``b``, is ``CAV(b vs a) == -CAV(a vs b)``
for the default hinge-SGD trainer (:class:`pytest_tcav.engine.trainers.HingeSGDTrainer`, its batched
pairs in :func:`pytest_tcav.engine.block_gram.train_hinge_pairs`)?  And if it is not, is
``cos(g, CAV(x vs y))`` biased by a constant along the target gradients ``g``, which would enter the
concept's statistic and not the null (the null negates one orientation of each random pair)?

Measured on the small CNNs of ``tests/helpers/synthetic.py`` (``texture_model`` with striped
inputs, ``shortcut_model`` with patched inputs, 40 inputs of class 1, layers ``conv1``-``conv3``,
random sets of 30 ``synthetic.random_images``):

1. Asymmetry (trainer called directly, ``trainer.train(positive, negative, seed)``), over
   ``--pairs`` pairs of fresh random sets per model: the mean cosine between the inputs' target
   gradients and ``CAV(a vs b)``, the same for ``CAV(b vs a)``, their sum (0 for an antisymmetric
   trainer), each with its standard error; ``cos(w_ab, -w_ba)`` (1 for an antisymmetric trainer).
   Trainers: the hinge SGD with one seed per pair (the same for both orientations), the hinge SGD
   with seed 0 for every pair, :class:`AntisymmetricHingeSGD` (the prototype fix below), and the
   engine's ``mean_difference`` trainer (antisymmetric by construction).
2. The engine's own orientation: ``TCAV.test(C, randoms=[R1..R10])`` and ``TCAV.test(R1,
   randoms=[C, R2..R10])``: the cosine of the pair (C, R1) in the first must be minus that of
   (R1, C) in the second if the engine's CAVs are antisymmetric (it trains each unordered pair
   once, in the order of the sets' fingerprints, and flips it: ``work_units.cav_key``).
3. Calibration: per model and trainer, ``--libraries`` libraries of 10 random sets and
   ``--pseudo`` pseudo-concepts each (fresh random sets), each tested with ``pytest_tcav.TCAV``
   (seed 0); the false-positive rate per layer (uncorrected p-value below 0.05) of direction
   ``positive`` and of direction ``negative`` (both from the same statistic and null with
   ``statistics.compare_to_null``), with exact 95% (Clopper-Pearson) intervals, and the null's
   SD (std of ``LayerResult.null_statistics``, averaged over libraries).  The same libraries and
   concepts for every trainer (paired).

The prototype fix (:class:`AntisymmetricHingeSGD`): train every pair in an order of its two sets
that does not depend on which is positive (a key computed from the set's contents), and flip the
CAV when the order was swapped.  Hinge SGD is exactly label-equivariant (negating every label
negates every update, bit for bit), so this makes ``CAV(b vs a, s) == -CAV(a vs b, s)`` bit for bit.

    python benchmarks/orientation.py [--models texture shortcut] [--pairs 300] [--libraries 10]
                                     [--pseudo 30] [--threads 1] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository: its tests.helpers

from pytest_tcav import TCAV  # noqa: E402
from pytest_tcav.engine import block_gram  # noqa: E402
from pytest_tcav.engine.activations import concept_activations, target_gradients  # noqa: E402
from pytest_tcav.engine.cav import CAV, CAVTrainer, Split  # noqa: E402
from pytest_tcav.engine.statistics import compare_to_null, pair_scores  # noqa: E402
from pytest_tcav.engine.trainers import HingeSGDTrainer, MeanDifferenceTrainer, make_trainer  # noqa: E402
from tests.helpers import synthetic  # noqa: E402

LAYERS = synthetic.LAYERS
SET_SIZE = synthetic.SET_SIZE
N_INPUTS = 40
N_RANDOM = 10
ALPHA = 0.05
MODELS: dict[str, tuple[Callable[[], torch.nn.Module], Callable[[int, torch.Generator], torch.Tensor]]] = {
    "texture": (synthetic.texture_model, synthetic.stripes),
    "shortcut": (synthetic.shortcut_model, synthetic.patches),
}


# -- the prototype fix ------------------------------------------------------------------------------------


def set_key(x: torch.Tensor) -> tuple[float, ...]:
    """A key of a set of activations that does not depend on its role: its examples' squared norms, sorted.

    The real fix would read the same numbers from the diagonal of the set's own Gram block
    (``blocks[(a, a)]`` in ``train_hinge_pairs``), which is computed anyway: no extra cost.
    """
    return tuple(sorted((x.double() ** 2).sum(1).tolist()))


class CanonicalOrder:
    """Mixin: each pair trained in the order of its sets' keys, the CAV flipped back when that swapped it.

    ``CAV(b vs a, seed) == -CAV(a vs b, seed)`` bit for bit (ties of the keys, identical sets
    in practice, keep the order asked for).
    """

    @staticmethod
    def _canonical(key_of: Callable[[int], tuple[float, ...]],
                   pairs: Sequence[tuple[int, int]]) -> tuple[list[tuple[int, int]], list[bool]]:
        swap = [key_of(b) < key_of(a) for a, b in pairs]
        return [(b, a) if s else (a, b) for (a, b), s in zip(pairs, swap)], swap

    def train(self, positive, negative, seed):
        if set_key(negative) < set_key(positive):
            return super().train(negative, positive, seed).flipped()  # type: ignore[misc]
        return super().train(positive, negative, seed)  # type: ignore[misc]

    def train_many(self, features, groups, pairs, seeds):
        keys: dict[int, tuple[float, ...]] = {}

        def key_of(a: int) -> tuple[float, ...]:
            if a not in keys:
                keys[a] = set_key(features[groups[a]])
            return keys[a]

        canonical, swap = self._canonical(key_of, pairs)
        cavs = super().train_many(features, groups, canonical, seeds)  # type: ignore[misc]
        return [cav.flipped() if s else cav for cav, s in zip(cavs, swap)]

    def train_sets(self, load, sizes, pairs, seeds, *, budget_bytes=None, blocks=None, gram_tiles_of=None):
        keys: dict[int, tuple[float, ...]] = {}

        def key_of(a: int) -> tuple[float, ...]:
            if a not in keys:
                keys[a] = set_key(load(a))
            return keys[a]

        canonical, swap = self._canonical(key_of, pairs)
        cavs = super().train_sets(load, sizes, canonical, seeds, budget_bytes=budget_bytes,  # type: ignore[misc]
                                  blocks=blocks, gram_tiles_of=gram_tiles_of)
        return [cav.flipped() if s else cav for cav, s in zip(cavs, swap)]


class AntisymmetricHingeSGD(CanonicalOrder, HingeSGDTrainer):
    """The prototype fix: the default hinge SGD, each pair in its sets' canonical order."""

    name = "hinge_sgd_antisymmetric"


class AntisymmetricMeanDifference(CanonicalOrder, MeanDifferenceTrainer):
    """``mean_difference`` in canonical order: its means are of the *training* examples, which the split
    draws by role (the positive set's permutation first), so it too is antisymmetric only in canonical order."""

    name = "mean_difference_antisymmetric"


class ConceptAlwaysPositive(HingeSGDTrainer):
    """The scheme the question feared, inside the engine: the concept (set 0) always trained as the positive
    class, each random pair in the engine's (fingerprint) order, so the null carries one orientation only.

    The engine itself trains every pair, the concept's included, in the order of the two sets'
    fingerprints and flips it (``work_units.cav_key``); this undoes that for the concept's pairs.
    """

    name = "hinge_sgd_concept_positive"

    def train_sets(self, load, sizes, pairs, seeds, *, budget_bytes=None, blocks=None, gram_tiles_of=None):
        swap = [b == 0 for _, b in pairs]
        asked = [(b, a) if s else (a, b) for (a, b), s in zip(pairs, swap)]
        cavs = super().train_sets(load, sizes, asked, seeds, budget_bytes=budget_bytes, blocks=blocks,
                                  gram_tiles_of=gram_tiles_of)
        return [cav.flipped() if s else cav for cav, s in zip(cavs, swap)]


@contextlib.contextmanager
def split_as_reversed() -> Iterator[None]:
    """Diagnostic: ``train(b, a)`` draws its split as ``train(a, b)`` would (the *negative* set's permutation
    first, its training examples stacked first).  With it, ``train(b, a, s) == -train(a, b, s)`` bit for bit
    for the hinge SGD: the split's role order is the whole cause (the SGD's shuffles permute the stacked
    positions, so they follow it)."""
    original = block_gram.balanced_split

    def swapped(n_pos: int, n_neg: int, test_fraction: float, rng: np.random.Generator) -> Split:
        split = original(n_neg, n_pos, test_fraction, rng)  # indices into [negative, positive]

        def remap(index: np.ndarray) -> np.ndarray:
            return np.where(index < n_neg, index + n_pos, index - n_neg)

        return Split(train=remap(split.train), test=remap(split.test),
                     labels=np.concatenate([np.ones(n_pos), -np.ones(n_neg)]))

    block_gram.balanced_split = swapped
    try:
        yield
    finally:
        block_gram.balanced_split = original


def trainers() -> dict[str, CAVTrainer]:
    return {"hinge_sgd": make_trainer(None), "hinge_antisym": AntisymmetricHingeSGD(),
            "mean_difference": make_trainer("mean_difference"), "hinge_concept_positive": ConceptAlwaysPositive()}


# -- 1. asymmetry of the trainer called directly -------------------------------------------------------------


def _cosine(grads: torch.Tensor, cav: CAV) -> float:
    return float(pair_scores(grads, cav.weights[None]).cosine[0])


def asymmetry(model: torch.nn.Module, inputs_of: Callable, n_pairs: int, seed: int) -> dict[str, Any]:
    """Per layer and trainer regime: cosines of both orientations over ``n_pairs`` pairs of fresh random sets."""
    gen = torch.Generator().manual_seed(seed)
    modules = {name: getattr(model, name) for name in LAYERS}
    grads = target_gradients(model, modules, inputs_of(N_INPUTS, gen), 1)
    regimes: dict[str, tuple[CAVTrainer, Callable[[int], int]]] = {
        "hinge_sgd, seed per pair": (make_trainer(None), lambda p: 1000 + p),
        "hinge_sgd, seed 0 always": (make_trainer(None), lambda p: 0),
        "hinge_antisym (prototype)": (AntisymmetricHingeSGD(), lambda p: 1000 + p),
        "mean_difference": (make_trainer("mean_difference"), lambda p: 1000 + p),
        "mean_difference_antisym": (AntisymmetricMeanDifference(), lambda p: 1000 + p),
        "hinge_sgd, split matched (diagnostic)": (make_trainer(None), lambda p: 1000 + p),
    }
    raw: dict[str, dict[str, dict[str, list[float]]]] = {
        layer: {r: {"ab": [], "ba": [], "cos_w": [], "rel_diff": []} for r in regimes} for layer in LAYERS}
    for p in range(n_pairs):
        a_acts = concept_activations(model, modules, synthetic.random_images(SET_SIZE, gen))
        b_acts = concept_activations(model, modules, synthetic.random_images(SET_SIZE, gen))
        for layer in LAYERS:
            a, b = a_acts[layer], b_acts[layer]
            for regime, (trainer, seed_of) in regimes.items():
                ab = trainer.train(a, b, seed_of(p))
                with split_as_reversed() if "split matched" in regime else contextlib.nullcontext():
                    ba = trainer.train(b, a, seed_of(p))
                w_ab, w_ba = ab.weights.double(), ba.weights.double()
                out = raw[layer][regime]
                out["ab"].append(_cosine(grads[layer], ab))
                out["ba"].append(_cosine(grads[layer], ba))
                out["cos_w"].append(float(-(w_ab @ w_ba) / (w_ab.norm() * w_ba.norm())))
                out["rel_diff"].append(float((w_ab + w_ba).norm() / w_ab.norm()))
    return raw


def _mean_se(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1) / np.sqrt(len(arr)))


# -- 2. the engine's orientation ---------------------------------------------------------------------------


def engine_antisymmetry(model: torch.nn.Module, inputs_of: Callable, seed: int) -> dict[str, float]:
    """Per layer: cos of (C vs R1) from a test of C, plus cos of (R1 vs C) from a test of R1 (0 if antisymmetric)."""
    gen = torch.Generator().manual_seed(seed)
    sets = [synthetic.random_images(SET_SIZE, gen) for _ in range(N_RANDOM + 1)]
    inputs = inputs_of(N_INPUTS, gen)
    engine = TCAV(model, seed=0, alpha=ALPHA)
    first = engine.test(sets[0], target=1, inputs=inputs, layers=LAYERS, random_sets=sets[1:])
    second = engine.test(sets[1], target=1, inputs=inputs, layers=LAYERS, random_sets=[sets[0], *sets[2:]])
    return {one.layer: float(one.concept_statistics[0] + two.concept_statistics[0])
            for one, two in zip(first.layers, second.layers)}


# -- 3. calibration of both directions ---------------------------------------------------------------------


def calibration(model: torch.nn.Module, inputs_of: Callable, libraries: int, n_pseudo: int,
                seed: int) -> dict[str, Any]:
    """Per trainer: per library, concept and layer, the p-values of both directions; per library the null."""
    out: dict[str, Any] = {name: {"p_pos": [], "p_neg": [], "null_sd": [], "check_s": []} for name in trainers()}
    for k in range(libraries):
        for name, trainer in trainers().items():
            gen = torch.Generator().manual_seed(seed + 1000 * k)
            library = [synthetic.random_images(SET_SIZE, gen) for _ in range(N_RANDOM)]
            inputs = inputs_of(N_INPUTS, gen)
            engine = TCAV(model, seed=0, alpha=ALPHA, trainer=trainer)
            record = out[name]
            for _ in range(n_pseudo):
                concept = synthetic.random_images(SET_SIZE, gen)
                start = time.perf_counter()
                result = engine.test(concept, target=1, inputs=inputs, layers=LAYERS, random_sets=library,
                                     direction="positive")
                record["check_s"].append(time.perf_counter() - start)
                pos, neg = [], []
                for layer in result.layers:
                    p_pos = compare_to_null(layer.statistic, np.asarray(layer.null_statistics), "positive").p_value
                    assert abs(p_pos - layer.p_value) < 1e-12, (p_pos, layer.p_value)
                    pos.append(p_pos)
                    neg.append(compare_to_null(layer.statistic, np.asarray(layer.null_statistics),
                                               "negative").p_value)
                record["p_pos"].append(pos)
                record["p_neg"].append(neg)
            record["null_sd"].append([float(np.std(layer.null_statistics, ddof=1)) for layer in result.layers])
    return out


def clopper_pearson(count: int, n: int) -> tuple[float, float]:
    lo = 0.0 if count == 0 else float(stats.beta.ppf(0.025, count, n - count + 1))
    hi = 1.0 if count == n else float(stats.beta.ppf(0.975, count + 1, n - count))
    return lo, hi


# -- report ------------------------------------------------------------------------------------------------


def report(name: str, raw: dict[str, Any], engine_sums: dict[str, float], calib: dict[str, Any],
           n_pairs: int, libraries: int, n_pseudo: int) -> None:
    null_sd = {layer: float(np.mean([sd[k] for sd in calib["hinge_sgd"]["null_sd"]])) for k, layer in
               enumerate(LAYERS)}
    print(f"\n== {name} model: {n_pairs} pairs of random sets of {SET_SIZE}, {N_INPUTS} inputs of class 1")
    print("1. trainer called directly: mean over pairs (± standard error) of the mean cosine with the target "
          "gradients; null SD = std of the engine's null statistics (hinge_sgd, 10 random sets, mean over "
          f"{libraries} libraries)")
    print("| layer | trainer | cos(g, CAV(a vs b)) | cos(g, CAV(b vs a)) | sum | sum / SE | SD of sum "
          "| null SD | cos(w_ab, -w_ba) | max abs sum |")
    print("|" + " --- |" * 10)
    for layer in LAYERS:
        for regime, values in raw[layer].items():
            ab, ba = np.asarray(values["ab"]), np.asarray(values["ba"])
            total = ab + ba
            (m_ab, se_ab), (m_ba, se_ba), (m_s, se_s) = _mean_se(ab), _mean_se(ba), _mean_se(total)
            z = m_s / se_s if se_s > 0 else 0.0
            print(f"| {layer} | {regime} | {m_ab:+.4f} ± {se_ab:.4f} | {m_ba:+.4f} ± {se_ba:.4f} | "
                  f"{m_s:+.4f} ± {se_s:.4f} | {z:+.2f} | {total.std(ddof=1):.4f} | {null_sd[layer]:.4f} | "
                  f"{np.mean(values['cos_w']):.3f} | {np.abs(total).max():.1e} |")
    print("2. engine: cos(C vs R1) from test(C) + cos(R1 vs C) from test(R1) (0 when the engine's CAVs are "
          "antisymmetric): " + ", ".join(f"{layer} {v:+.1e}" for layer, v in engine_sums.items()))
    n = libraries * n_pseudo
    print(f"3. false-positive rate per layer, uncorrected, alpha {ALPHA}: {libraries} libraries of {N_RANDOM} "
          f"random sets x {n_pseudo} pseudo-concepts = {n} checks; count/n [exact 95% CI, as if independent] "
          "± standard error over libraries (the checks of a library share its null); null SD mean over libraries")
    print("| layer | trainer | positive | negative | null SD | s/check (median) |")
    print("|" + " --- |" * 6)
    for k, layer in enumerate(LAYERS):
        for trainer, record in calib.items():
            cells = []
            for key in ("p_pos", "p_neg"):
                rejected = np.asarray(record[key])[:, k] < ALPHA
                count = int(rejected.sum())
                lo, hi = clopper_pearson(count, n)
                # the checks of one library share its null: the standard error over libraries of their rates
                per_library = rejected.reshape(libraries, n_pseudo).mean(1)
                se = float(per_library.std(ddof=1) / np.sqrt(libraries)) if libraries > 1 else float("nan")
                cells.append(f"{count}/{n} = {100 * count / n:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] "
                             f"± {100 * se:.1f}")
            sd = float(np.mean([s[k] for s in record["null_sd"]]))
            print(f"| {layer} | {trainer} | {cells[0]} | {cells[1]} | {sd:.4f} | "
                  f"{float(np.median(record['check_s'])):.2f} |")
    # pooled over layers: the two directions' totals per trainer
    for trainer, record in calib.items():
        pos = int((np.asarray(record["p_pos"]) < ALPHA).sum())
        neg = int((np.asarray(record["p_neg"]) < ALPHA).sum())
        total = n * len(LAYERS)
        print(f"   {trainer}, all layers: positive {pos}/{total} = {100 * pos / total:.1f}%, negative "
              f"{neg}/{total} = {100 * neg / total:.1f}%")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--pairs", type=int, default=300, help="pairs of random sets for the asymmetry")
    parser.add_argument("--libraries", type=int, default=10, help="libraries of 10 random sets per model")
    parser.add_argument("--pseudo", type=int, default=30, help="pseudo-concepts per library")
    parser.add_argument("--seed", type=int, default=71)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test, figures meaningless")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.pairs, args.libraries, args.pseudo = 4, 1, 3
    start = time.perf_counter()
    for name in args.models:
        make_model, inputs_of = MODELS[name]
        model = make_model()
        raw = asymmetry(model, inputs_of, args.pairs, args.seed)
        engine_sums = engine_antisymmetry(model, inputs_of, args.seed + 1)
        calib = calibration(model, inputs_of, args.libraries, args.pseudo, args.seed + 2)
        report(name, raw, engine_sums, calib, args.pairs, args.libraries, args.pseudo)
        print(f"   ({name}: {time.perf_counter() - start:.0f} s so far)", flush=True)
    print(f"\nwall time {time.perf_counter() - start:.0f} s, torch threads {torch.get_num_threads()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

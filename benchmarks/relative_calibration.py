"""False-positive rate and power of relative TCAV (``against=``), on models with known ground truth.

Uses the generated textures and small CNNs of ``tests/helpers/synthetic.py``:
``texture_model`` (class 1 = striped, class 0 = dotted) and ``shortcut_model``
(class 1 = a planted patch; textures equally common in both classes).

False positives: ``--pairs`` pairs (C, D) of pseudo-concepts, both sets drawn
independently from one distribution, so that C and D are exchangeable and the
null hypothesis holds.  Three nulls: both sets from the random mixture
(stripes / dots / smooth noise) on the texture model and on the shortcut model,
and both sets of stripes on the texture model: a concept the model uses
strongly, on both sides, which tests that the null is "C and D do not differ",
not "neither matters".  Each pair is tested for ``positive`` and ``either`` on 3
layers, Holm-corrected, with N = 10 repetitions.

Power: ``--replicates`` independent draws of planted pairs: striped against
dotted (positive for the texture model's class 1), the same reversed
(``positive`` must fail: its rate is a false-positive rate too), the patch
against the union of stripes and dots (positive for the shortcut model's
class 1), and striped against the patch on the texture model (the patch plays
no part in its decisions).

Rates are printed with exact (Clopper-Pearson) 95% intervals.

    python benchmarks/relative_calibration.py [--pairs 60] [--replicates 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository: its tests.helpers

from pytest_tcav import TCAV  # noqa: E402
from tests.helpers import synthetic  # noqa: E402

LAYERS = ["conv1", "conv2", "conv3"]
SET_SIZE = 30
N_REPETITIONS = 10
ALPHA = 0.05
Maker = Callable[[int, torch.Generator], torch.Tensor]


def rate(k: int, n: int) -> str:
    """The rate with its exact (Clopper-Pearson) 95% interval."""
    interval = stats.binomtest(int(k), int(n)).proportion_ci(0.95)
    return f"{k}/{n} = {k / n:.3f} [{interval.low:.3f}, {interval.high:.3f}]"


def false_positives(model: torch.nn.Module, make: Maker, inputs_of: Maker, n_pairs: int,
                    seed: int) -> dict[str, Any]:
    """Counts of significant verdicts over ``n_pairs`` exchangeable pairs (both sets from ``make``)."""
    gen = torch.Generator().manual_seed(seed)
    inputs = inputs_of(40, gen)
    engine = TCAV(model, seed=0, alpha=ALPHA)
    counts: dict[str, Any] = {"n": n_pairs, "positive": 0, "either": 0, "layer": np.zeros(len(LAYERS))}
    for _ in range(n_pairs):
        concept, other = make(SET_SIZE, gen), make(SET_SIZE, gen)
        for direction in ("positive", "either"):
            result = engine.test(concept, target=1, inputs=inputs, layers=LAYERS, random_sets=N_REPETITIONS,
                                 against=other, direction=direction)
            counts[direction] += result.any_significant
        counts["layer"] += np.array([layer.p_value < ALPHA for layer in result.layers])
    return counts


def power(model: torch.nn.Module, make: Maker, against: list[Maker], inputs_of: Maker, direction: str,
          replicates: int, seed: int) -> tuple[int, np.ndarray]:
    gen = torch.Generator().manual_seed(seed)
    engine = TCAV(model, seed=0, alpha=ALPHA)
    hits, per_layer = 0, np.zeros(len(LAYERS))
    for _ in range(replicates):
        concept = make(SET_SIZE, gen)
        others = [other(SET_SIZE, gen) for other in against]
        inputs = inputs_of(40, gen)
        result = engine.test(concept, target=1, inputs=inputs, layers=LAYERS, random_sets=N_REPETITIONS,
                             against=others if len(others) > 1 else others[0], direction=direction)
        hits += result.any_significant
        per_layer += np.array([layer.significant for layer in result.layers])
    return hits, per_layer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=60, help="exchangeable pairs per null")
    parser.add_argument("--replicates", type=int, default=20, help="independent draws per planted pair")
    parser.add_argument("--seed", type=int, default=31)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    texture, shortcut = synthetic.texture_model(), synthetic.shortcut_model()
    print(f"relative TCAV, alpha {ALPHA}, Holm over {len(LAYERS)} layers, N = {N_REPETITIONS} seeded CAVs of "
          f"C vs D against {N_REPETITIONS} relabelings, sets of {SET_SIZE}, 40 inputs of class 1; "
          "rate [exact 95% interval]")
    nulls = [
        ("random vs random, texture model", texture, synthetic.random_images, synthetic.stripes),
        ("random vs random, shortcut model", shortcut, synthetic.random_images, synthetic.patches),
        ("striped vs striped, texture model", texture, synthetic.stripes, synthetic.stripes),
    ]
    for k, (label, model, make, inputs_of) in enumerate(nulls):
        start = time.perf_counter()
        c = false_positives(model, make, inputs_of, args.pairs, args.seed + k)
        n = c["n"]
        bound = int(stats.binom.ppf(0.999, n, ALPHA))
        print(f"false positives, {label} ({time.perf_counter() - start:.0f} s): positive {rate(c['positive'], n)}; "
              f"either {rate(c['either'], n)}; uncorrected two-sided per layer "
              f"{np.round(c['layer'] / n, 3).tolist()} (a calibrated test stays <= {bound}/{n} with "
              "probability 0.999)")
    planted = [
        ("striped against dotted, texture model, positive", texture, synthetic.stripes, [synthetic.dots],
         synthetic.stripes, "positive"),
        ("dotted against striped, texture model, positive (must fail)", texture, synthetic.dots,
         [synthetic.stripes], synthetic.stripes, "positive"),
        ("patch against striped + dotted, shortcut model, positive", shortcut, synthetic.patches,
         [synthetic.stripes, synthetic.dots], synthetic.patches, "positive"),
        ("striped against patch, texture model, positive", texture, synthetic.stripes, [synthetic.patches],
         synthetic.stripes, "positive"),
    ]
    for k, (label, model, make, against, inputs_of, direction) in enumerate(planted):
        start = time.perf_counter()
        hits, per_layer = power(model, make, against, inputs_of, direction, args.replicates, args.seed + 100 + k)
        print(f"power, {label} ({time.perf_counter() - start:.0f} s): any layer {rate(hits, args.replicates)}; "
              f"per layer {dict(zip(LAYERS, (per_layer / args.replicates).round(2).tolist()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

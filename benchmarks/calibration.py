"""False-positive rate and power of the significance test, on models with known ground truth.

Uses the generated textures and small CNNs of ``tests/helpers/synthetic.py`` (trained
here in seconds): ``texture_model`` (class 1 = striped, class 0 = dotted) and
``shortcut_model`` (class 1 = a planted patch, textures equally common in both
classes).  Random sets are mixed stripes / dots / smooth-noise images.

False positives: ``--pseudo`` sets drawn from the random sets' own distribution,
each tested as a concept against the next 10 sets (cyclically), on 3 layers,
Holm-corrected, for direction ``positive`` and ``either``; ``--draws`` repeats
this with fresh sets and pools the counts (on both models).  For comparison, the
tutorial's recipe (a two-sample t-test of concept-vs-random_i ``sign_count``
scores against random_0-vs-random_j scores, per layer, uncorrected) is run on
the same CAVs.

Power: ``--replicates`` independent draws (fresh concept set and fresh random
sets) of three concepts the models provably use: striped (positive for the
texture model's class 1), dotted (negative for it) and the patch (positive for
the shortcut model's class 1).

    python benchmarks/calibration.py [--pseudo 101] [--draws 1] [--replicates 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
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
N_RANDOM = 10
ALPHA = 0.05


def false_positives(model: torch.nn.Module, inputs_of: Callable, n_pseudo: int, seed: int) -> dict[str, Any]:
    """Counts of significant verdicts over ``n_pseudo`` random pseudo-concepts (one draw of sets)."""
    gen = torch.Generator().manual_seed(seed)
    sets = [synthetic.random_images(SET_SIZE, gen) for _ in range(n_pseudo)]
    inputs = inputs_of(40, gen)
    engine = TCAV(model, seed=0, alpha=ALPHA)
    counts: dict[str, Any] = {"n": n_pseudo, "positive": 0, "either": 0, "tutorial_any": 0,
                              "layer": np.zeros(len(LAYERS)), "tutorial_layer": np.zeros(len(LAYERS))}
    for j in range(n_pseudo):
        randoms = [sets[(j + k) % n_pseudo] for k in range(1, N_RANDOM + 1)]
        for direction in ("positive", "either"):
            result = engine.test(sets[j], target=1, inputs=inputs, layers=LAYERS, random_sets=randoms,
                                 direction=direction)
            counts[direction] += result.any_significant
        counts["layer"] += np.array([layer.p_value < ALPHA for layer in result.layers])
        # the tutorial's recipe on the same CAVs: [concept, random_i] against [random_0, random_j]
        anchor = engine.test(randoms[0], target=1, inputs=inputs, layers=LAYERS, random_sets=randoms[1:],
                             direction="either")
        hits = []
        for mine, theirs in zip(result.layers, anchor.layers):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # saturated scores: equal values
                p = stats.ttest_ind(mine.concept_scores, theirs.concept_scores).pvalue
            hits.append(bool(np.isfinite(p) and p < ALPHA))
        counts["tutorial_layer"] += hits
        counts["tutorial_any"] += any(hits)
    return counts


def _rate(k: int, n: int) -> str:
    """The rate with its exact (Clopper-Pearson) 95% interval."""
    interval = stats.binomtest(int(k), int(n)).proportion_ci(0.95)
    return f"{k}/{n} = {k / n:.3f} [{interval.low:.3f}, {interval.high:.3f}]"


def report_false_positives(label: str, runs: list[dict[str, Any]], seconds: float) -> None:
    n = sum(r["n"] for r in runs)
    total = {key: sum(r[key] for r in runs) for key in ("positive", "either", "tutorial_any", "layer",
                                                        "tutorial_layer")}
    per_draw = runs[0]["n"]
    bound = int(stats.binom.ppf(0.999, per_draw, ALPHA))
    print(f"false positives, {label}, {len(runs)} draw(s) of {per_draw} pseudo-concepts x {N_RANDOM} random "
          f"sets, alpha {ALPHA} ({seconds:.0f} s); rate [exact 95% interval]:")
    print(f"  pytest-tcav, Holm over {len(LAYERS)} layers: positive {_rate(total['positive'], n)}; "
          f"either {_rate(total['either'], n)}")
    print(f"    per draw (positive, either): {[(r['positive'], r['either']) for r in runs]}; a calibrated "
          f"test stays <= {bound}/{per_draw} per draw with probability 0.999")
    print(f"  pytest-tcav, uncorrected two-sided, per layer: {np.round(total['layer'] / n, 3).tolist()}")
    print(f"  tutorial recipe (sign_count, ttest_ind vs random_0, uncorrected), per layer: "
          f"{np.round(total['tutorial_layer'] / n, 3).tolist()}; any layer: {_rate(total['tutorial_any'], n)}")


def power(texture: torch.nn.Module, shortcut: torch.nn.Module, replicates: int, seed: int) -> None:
    cases = [
        ("striped, texture model, positive", texture, synthetic.stripes, synthetic.stripes, "positive"),
        ("dotted, texture model, negative", texture, synthetic.dots, synthetic.stripes, "negative"),
        ("patch, shortcut model, positive", shortcut, synthetic.patches, synthetic.patches, "positive"),
    ]
    print(f"power over {replicates} independent draws (concept set of {SET_SIZE}, {N_RANDOM} fresh random sets, "
          f"40 inputs of class 1, alpha {ALPHA}, Holm over {len(LAYERS)} layers):")
    for label, model, make_concept, make_inputs, direction in cases:
        gen = torch.Generator().manual_seed(seed)
        any_hits = 0
        per_layer = np.zeros(len(LAYERS))
        engine = TCAV(model, seed=0, alpha=ALPHA)
        for _ in range(replicates):
            concept = make_concept(SET_SIZE, gen)
            randoms = [synthetic.random_images(SET_SIZE, gen) for _ in range(N_RANDOM)]
            inputs = make_inputs(40, gen)
            result = engine.test(concept, target=1, inputs=inputs, layers=LAYERS, random_sets=randoms,
                                 direction=direction)
            any_hits += result.any_significant
            per_layer += np.array([layer.significant for layer in result.layers])
        print(f"  {label}: any layer {any_hits}/{replicates}; per layer "
              f"{dict(zip(LAYERS, (per_layer / replicates).round(2).tolist()))}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pseudo", type=int, default=101, help="random pseudo-concepts per draw")
    parser.add_argument("--draws", type=int, default=1, help="independent draws of pseudo-concepts per model")
    parser.add_argument("--replicates", type=int, default=20, help="independent draws per concept for power")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    texture = synthetic.texture_model()
    shortcut = synthetic.shortcut_model()
    for label, model, inputs_of in (("texture model", texture, synthetic.stripes),
                                    ("shortcut model", shortcut, synthetic.patches)):
        start = time.perf_counter()
        runs = [false_positives(model, inputs_of, args.pseudo, args.seed + k) for k in range(args.draws)]
        report_false_positives(label, runs, time.perf_counter() - start)
    power(texture, shortcut, args.replicates, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())

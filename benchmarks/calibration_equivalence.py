"""Error rates of the claims a "not used" check makes: equivalence margins, the CAV gate, relative TCAV.

Beside ``calibration.py`` (the significance test's false-positive rate and
power), on the same generated textures and small CNNs of
``tests/helpers/synthetic.py`` (``texture_model``: class 1 = striped, class 0 =
dotted; ``shortcut_model``: class 1 = a planted patch).  Every rate is printed
with its number of trials and its exact (Clopper-Pearson) 95% interval.

(a) False equivalence at the margin.  The equivalence test's null hypothesis
fixes the concept (its effect ``theta`` is one number) and lets the random sets
vary, so the measurement does the same.  A *pool* of ``P`` random sets stands
for the random-set distribution, and its truth is computed exactly: a concept's
effect over the pool is ``mean_i s(c, R_i)`` (the statistic against all ``P``
sets; the null's mean is 0 by antisymmetry), and the unit is
``sigma_N = sqrt(mean sd(S)^2)`` over random ``N``-subsets of the pool (the
population standard deviation of the null that a test with ``N`` sets
estimates).  The concept is a pixel blend ``a * planted + (1 - a) * random`` of
30 planted-concept images (stripes for the texture model, the patch for the
shortcut model) with 30 random images; ``a`` is found by bisection so that the
effect over the pool equals ``margin * sigma_N`` on the layer tested (to 1% of
the margin).  Each trial then tests that fixed concept, one layer, with the
usual configuration (``N`` = 10 random sets drawn without replacement from the
pool, the same 40 inputs, ``direction="positive"``, ``margin=m``, alpha 0.05),
and counts "shown below the margin".  Over random subsets the concept's mean
statistic is exactly the pool's, so the effect sits at the margin by
construction; the rate should be at most alpha.  Caveats: subsets are drawn
from a finite pool (the variance of their mean is ``(P - N) / (P - 1)`` of
independent draws', 0.91 at ``P`` = 100, which makes the test slightly
conservative), and trials share sets, so the intervals, which treat them as
independent, are somewhat optimistic.

(b) Pass rate at zero effect.  Pseudo-concepts drawn from the random sets' own
distribution (the model cannot use what it cannot tell from random images),
each tested against a random ``N``-subset of a pool with ``K`` fresh inputs of
class 1, on 3 layers; the subsets for N = 5, 10, 20 are nested (the first 5 of
the 10 of the 20) and so are the inputs (K = 10, 30, 100), so configurations
are compared on the same draws.  Reported: the rate at which the equivalence
test shows the effect below the margin on all three layers (Holm), for margin
1 and 2, ``positive`` and ``either``.  A pseudo-concept's own effect is not
exactly 0: it is spread like a random set's (about one unit), which is what a
concept the model ignores looks like.  The assertion also needs every layer to
be conclusive (the CAV gate), which such concepts are mostly not: that rate is
printed too.

(c) The CAV gate.  The share of layers whose verdict is ``inconclusive``, for
``direction="positive"``: on planted concepts (striped and dotted on the
texture model, the patch on the shortcut model; fresh concept set, random
subset and inputs each trial; should be about 0) and on the pseudo-concepts of
(b) at N = 10, K = 30 (should be about 1: at most the gate's two findings'
false rates, about 2 alpha, may call such a layer conclusive).

(d) Relative TCAV (``against=``): false-positive rate over exchangeable pairs
and power on striped against dotted, through ``relative_calibration.py``'s
functions.  Skipped, with a line saying so, in a checkout without it.

    python benchmarks/calibration_equivalence.py [--trials 100] [--pool 60] [--pseudo 40] [--gate 40] \
        [--pairs 40] [--replicates 40] [--parts abcd] [--threads 1] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository: its tests.helpers
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the other benchmarks

from pytest_tcav import TCAV  # noqa: E402
from tests.helpers import synthetic  # noqa: E402

LAYERS = ["conv1", "conv2", "conv3"]
SET_SIZE = 30
ALPHA = 0.05
Maker = Callable[[int, torch.Generator], torch.Tensor]


def rate(k: int, n: int) -> str:
    """The rate with its trials and exact (Clopper-Pearson) 95% interval."""
    if n == 0:
        return "0 trials"
    interval = stats.binomtest(int(k), int(n)).proportion_ci(0.95)
    return f"{k}/{n} = {k / n:.3f} [{interval.low:.3f}, {interval.high:.3f}]"


@dataclass
class Bench:
    """One model's engine and pool of random sets, shared by every part so the pool's CAVs are trained once."""

    engine: TCAV
    pool: list[torch.Tensor]

    @classmethod
    def make(cls, model: torch.nn.Module, pool_size: int, seed: int) -> Bench:
        gen = torch.Generator().manual_seed(seed)
        return cls(TCAV(model, seed=0, alpha=ALPHA), [synthetic.random_images(SET_SIZE, gen) for _ in range(pool_size)])


def _subset(pool: list[torch.Tensor], n: int, rng: np.random.Generator) -> list[torch.Tensor]:
    return [pool[i] for i in sorted(rng.choice(len(pool), n, replace=False))]


# -- (a) false equivalence at the margin -------------------------------------------------------


def pool_unit(engine: TCAV, concept: torch.Tensor, pool: list[torch.Tensor], inputs: torch.Tensor, layer: str,
              n: int, subsets: int, rng: np.random.Generator) -> float:
    """``sigma_N``: the root mean null variance over random ``n``-subsets of the pool."""
    variances = []
    for _ in range(subsets):
        result = engine.test(concept, target=1, inputs=inputs, layers=[layer], random_sets=_subset(pool, n, rng))
        variances.append(result.layers[0].null_sd ** 2)
    return float(np.sqrt(np.mean(variances)))


def pool_effect(engine: TCAV, concept: torch.Tensor, pool: list[torch.Tensor], inputs: torch.Tensor,
                layer: str) -> float:
    """The concept's mean statistic over the whole pool: its raw effect in this population."""
    layer_result = engine.test(concept, target=1, inputs=inputs, layers=[layer], random_sets=pool).layers[0]
    return layer_result.statistic - layer_result.null_mean


def blend_at_margin(engine: TCAV, planted: torch.Tensor, base: torch.Tensor, pool: list[torch.Tensor],
                    inputs: torch.Tensor, layer: str, target_raw: float,
                    steps: int = 12) -> tuple[float, torch.Tensor, float] | None:
    """The blend weight ``a`` whose raw effect is closest to ``target_raw`` from above (the null hypothesis holds).

    Bisection on ``a``; None if [0, 1] does not bracket the target.  The effect
    is not exactly monotone in ``a`` (each blend's CAVs are trained anew), so
    the blend returned is the best one evaluated with an effect at least the
    target, within 1% of it when one was found.
    """
    def effect(a: float) -> tuple[float, torch.Tensor]:
        concept = a * planted + (1.0 - a) * base
        return pool_effect(engine, concept, pool, inputs, layer), concept

    low, high = 0.0, 1.0
    f_low, _ = effect(low)
    f_high, concept = effect(high)
    if not f_low < target_raw < f_high:
        return None
    best = (high, concept, f_high)
    for _ in range(steps):
        mid = (low + high) / 2
        value, concept = effect(mid)
        if target_raw <= value < best[2]:
            best = (mid, concept, value)
        if best[2] <= 1.01 * target_raw:
            break
        low, high = (mid, high) if value < target_raw else (low, mid)
    return best


def false_equivalence(bench: Bench, make_planted: Maker, inputs_of: Maker, layer: str, margins: list[float],
                      n: int, trials: int, seed: int) -> list[dict[str, Any]]:
    """For each margin: the blend at the margin and how often the margin test shows the effect below it."""
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    engine, pool = bench.engine, bench.pool
    inputs = inputs_of(40, gen)
    planted = make_planted(SET_SIZE, gen)
    bases = [synthetic.random_images(SET_SIZE, gen) for _ in range(5)]  # the first whose effect lies below
    unit = pool_unit(engine, bases[0], pool, inputs, layer, n, max(20, trials), rng)
    out = []
    for margin in margins:
        record: dict[str, Any] = {"layer": layer, "margin": margin, "unit": unit, "trials": 0, "shown": 0}
        found = next((f for f in (blend_at_margin(engine, planted, base, pool, inputs, layer, margin * unit)
                                  for base in bases) if f is not None), None)
        if found is None:
            out.append(record)
            continue
        weight, concept, raw = found
        shown, effects = 0, []
        for _ in range(trials):
            result = engine.test(concept, target=1, inputs=inputs, layers=[layer], random_sets=_subset(pool, n, rng),
                                 direction="positive", margin=margin)
            shown += result.equivalent(result.layers[0])
            effects.append(result.layers[0].effect)
        record.update(weight=weight, effect=raw / unit, trials=trials, shown=shown,
                      median_estimate=float(np.median(effects)))
        out.append(record)
    return out


# -- (b) pass rate at zero effect, (c) the gate ------------------------------------------------


def _equivalent_everywhere(layers: list[Any], margin: float, direction: str) -> bool:
    from pytest_tcav.engine.equivalence import equivalence_p
    from pytest_tcav.engine.statistics import adjust_p_values

    raw = [equivalence_p(r.statistic - r.null_mean, r.null_sd, r.concept_statistics, margin, direction)
           for r in layers]
    return all(p < ALPHA for p in adjust_p_values(raw, "holm"))


def zero_effect(bench: Bench, inputs_of: Maker, n_values: list[int], k_values: list[int], margins: list[float],
                pseudo: int, seed: int) -> dict[str, Any]:
    """Counts over ``pseudo`` pseudo-concepts, per (N, K, margin, direction), and the gate's verdicts."""
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    engine, pool = bench.engine, bench.pool
    counts: dict[str, Any] = {"trials": pseudo, "shown": {}, "assertion": {}, "inconclusive": {}}
    checked = False
    for _ in range(pseudo):
        concept = synthetic.random_images(SET_SIZE, gen)
        sets = _subset(pool, max(n_values), rng)
        inputs = inputs_of(max(k_values), gen)
        for n in n_values:
            for k in k_values:
                result = engine.test(concept, target=1, inputs=inputs[:k], layers=LAYERS, random_sets=sets[:n],
                                     direction="positive", margin=margins[0])
                if not checked:  # the pure function reproduces the engine's margin test
                    assert _equivalent_everywhere(result.layers, margins[0], "positive") == all(
                        result.equivalent(r) for r in result.layers)
                    checked = True
                gated = sum(r.inconclusive for r in result.layers)
                counts["inconclusive"][n, k] = counts["inconclusive"].get((n, k), 0) + gated
                for margin in margins:
                    for direction in ("positive", "either"):
                        key = (n, k, margin, direction)
                        shown = _equivalent_everywhere(result.layers, margin, direction)
                        counts["shown"][key] = counts["shown"].get(key, 0) + shown
                        counts["assertion"][key] = counts["assertion"].get(key, 0) + (shown and gated == 0)
    return counts


def gate_on_planted(bench: Bench, make: Maker, inputs_of: Maker, replicates: int, seed: int) -> np.ndarray:
    """Per layer, how many of ``replicates`` fresh draws of a planted concept were called inconclusive."""
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    engine, pool = bench.engine, bench.pool
    per_layer = np.zeros(len(LAYERS), dtype=int)
    for _ in range(replicates):
        result = engine.test(make(SET_SIZE, gen), target=1, inputs=inputs_of(40, gen), layers=LAYERS,
                             random_sets=_subset(pool, 10, rng), direction="positive")
        per_layer += np.array([r.inconclusive for r in result.layers])
    return per_layer


# -- report ------------------------------------------------------------------------------------


def part_a(texture: Bench, shortcut: Bench, trials: int, seed: int, layers: list[str]) -> None:
    print(f"(a) false equivalence at the margin: one fixed concept whose effect over a pool of {len(texture.pool)} "
          f"random sets equals the margin, tested on one layer against {trials} random 10-subsets of the pool "
          f"(40 inputs, positive, alpha {ALPHA}); should be <= {ALPHA}")
    total = [0, 0]
    for k, (label, model, make, inputs_of) in enumerate((("striped, texture model", texture, synthetic.stripes,
                                                          synthetic.stripes),
                                                         ("patch, shortcut model", shortcut, synthetic.patches,
                                                          synthetic.patches))):
        for j, layer in enumerate(layers):
            start = time.perf_counter()
            records = false_equivalence(model, make, inputs_of, layer, [1.0, 2.0], 10, trials, seed + 10 * k + j)
            for r in records:
                if not r["trials"]:
                    print(f"  {label}, {layer}, margin {r['margin']:g}: the blend does not bracket the margin; "
                          "not measured")
                    continue
                total[0] += r["shown"]
                total[1] += r["trials"]
                print(f"  {label}, {layer}, margin {r['margin']:g}: blend {r['weight']:.3f}, effect over the pool "
                      f"{r['effect']:.3f} (median estimate {r['median_estimate']:.3f}); shown below the margin "
                      f"{rate(r['shown'], r['trials'])}  ({time.perf_counter() - start:.0f} s)")
    print(f"  pooled: {rate(*total)}")


def part_bc(texture: Bench, shortcut: Bench, pseudo: int, gate: int, seed: int, n_values: list[int],
            k_values: list[int]) -> None:
    margins = [1.0, 2.0]
    print(f"(b) pass rate at zero effect: {pseudo} pseudo-concepts per model drawn like the random sets, "
          f"N random sets from a pool of {len(texture.pool)}, K inputs, 3 layers, Holm, alpha {ALPHA}: the share shown "
          "below the margin on all layers [and the assertion's pass rate, which also needs every layer conclusive]")
    gate_pseudo: dict[str, tuple[int, int]] = {}
    for k, (label, model, inputs_of) in enumerate((("texture model", texture, synthetic.stripes),
                                                  ("shortcut model", shortcut, synthetic.patches))):
        start = time.perf_counter()
        c = zero_effect(model, inputs_of, n_values, k_values, margins, pseudo, seed + 100 + k)
        print(f"  {label} ({time.perf_counter() - start:.0f} s):")
        for margin in margins:
            for direction in ("positive", "either"):
                print(f"    margin {margin:g}, {direction}:")
                for n in n_values:
                    cells = [f"K={kk}: {rate(c['shown'][n, kk, margin, direction], pseudo)} "
                             f"[{c['assertion'][n, kk, margin, direction]}]" for kk in k_values]
                    print(f"      N={n}: " + "; ".join(cells))
        middle = (n_values[len(n_values) // 2], k_values[len(k_values) // 2])
        gate_pseudo[label] = (c["inconclusive"][middle], pseudo * len(LAYERS))
        per_config = {f"N={n},K={kk}": round(v / (pseudo * len(LAYERS)), 3) for (n, kk), v in c["inconclusive"].items()}
        print(f"    inconclusive layers per configuration: {per_config}")
    print(f"(c) the CAV gate, direction positive, 10 random sets, share of layers called inconclusive "
          f"(layer-verdicts over {len(LAYERS)} layers):")
    for label, (k_incl, n_layers) in gate_pseudo.items():
        print(f"  pseudo-concepts, {label} (N={n_values[len(n_values) // 2]}, K={k_values[len(k_values) // 2]}): "
              f"{rate(k_incl, n_layers)}; should be about 1")
    for j, (label, model, make, inputs_of) in enumerate((
            ("striped, texture model", texture, synthetic.stripes, synthetic.stripes),
            ("dotted, texture model", texture, synthetic.dots, synthetic.stripes),
            ("patch, shortcut model", shortcut, synthetic.patches, synthetic.patches))):
        start = time.perf_counter()
        per_layer = gate_on_planted(model, make, inputs_of, gate, seed + 200 + j)
        print(f"  planted {label} ({time.perf_counter() - start:.0f} s): {rate(int(per_layer.sum()), gate * 3)}; "
              f"per layer {dict(zip(LAYERS, per_layer.tolist()))} of {gate}; should be about 0")


def part_d(texture: Bench, shortcut: Bench, pairs: int, replicates: int, seed: int) -> None:
    try:
        import relative_calibration
    except ImportError:
        print("(d) relative TCAV: skipped, benchmarks/relative_calibration.py is not in this checkout")
        return
    print(f"(d) relative TCAV (relative_calibration.py's functions: N = {relative_calibration.N_REPETITIONS}, "
          f"3 layers, Holm, alpha {ALPHA}):")
    for k, (label, model, inputs_of) in enumerate((("texture model", texture, synthetic.stripes),
                                                  ("shortcut model", shortcut, synthetic.patches))):
        start = time.perf_counter()
        c = relative_calibration.false_positives(model.engine.model, synthetic.random_images, inputs_of, pairs,
                                                 seed + k)
        print(f"  false positives, random vs random, {label} ({time.perf_counter() - start:.0f} s): positive "
              f"{rate(c['positive'], c['n'])}; either {rate(c['either'], c['n'])}")
    start = time.perf_counter()
    hits, per_layer = relative_calibration.power(texture.engine.model, synthetic.stripes, [synthetic.dots],
                                                 synthetic.stripes, "positive", replicates, seed + 10)
    print(f"  power, striped against dotted, texture model, positive ({time.perf_counter() - start:.0f} s): "
          f"{rate(hits, replicates)}; per layer {dict(zip(LAYERS, (per_layer / replicates).round(2).tolist()))}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100, help="(a) trials per model, layer and margin")
    parser.add_argument("--pool", type=int, default=60, help="random sets in each pool")
    parser.add_argument("--pseudo", type=int, default=40, help="(b) pseudo-concepts per model")
    parser.add_argument("--gate", type=int, default=40, help="(c) draws per planted concept")
    parser.add_argument("--pairs", type=int, default=40, help="(d) exchangeable pairs per model")
    parser.add_argument("--replicates", type=int, default=40, help="(d) planted pairs for power")
    parser.add_argument("--parts", default="abcd", help="which parts to run (b and c run together)")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--quick", action="store_true", help="a smoke test: a few trials, figures meaningless")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    n_values, k_values = [5, 10, 20], [10, 30, 100]
    if args.quick:
        args.trials, args.pool, args.pseudo, args.gate, args.pairs, args.replicates = 3, 12, 2, 2, 1, 1
        n_values, k_values = [3, 5], [5, 10]
    texture = Bench.make(synthetic.texture_model(), args.pool, args.seed)
    shortcut = Bench.make(synthetic.shortcut_model(), args.pool, args.seed + 1)
    start = time.perf_counter()
    if "a" in args.parts:
        part_a(texture, shortcut, args.trials, args.seed, LAYERS[:1] if args.quick else LAYERS)
    if "b" in args.parts or "c" in args.parts:
        part_bc(texture, shortcut, args.pseudo, args.gate, args.seed, n_values, k_values)
    if "d" in args.parts:
        part_d(texture, shortcut, args.pairs, args.replicates, args.seed)
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

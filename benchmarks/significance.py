"""The significance shape: one concept against 20 random sets, pytest-tcav against Captum's tutorial recipe.

Workload: GoogLeNet with random weights at 224x224, layers inception4c/4d/4e,
one concept and 20 random sets of 20 images each, 20 inputs, target 340, plain
gradients.

* pytest-tcav: one ``TCAV.test`` of the concept against the 20 random sets, which
  trains 20 concept-vs-random CAVs and the 190 random-vs-random CAVs of its null
  per layer, and gives one p-value per layer.
* Captum: the recipe of its TCAV tutorial with the same random sets: experimental
  sets concept-vs-random_i (20) and random_0-vs-random_j (19), one ``interpret``
  call, and per layer ``scipy.stats.ttest_ind`` of the two groups' ``sign_count``
  scores.

Printed: both times (best of ``--repeat`` runs each), the forward/backward floor (the engine's
passes alone) and the ratios, our
peak RSS (``ru_maxrss`` after our runs, before Captum's; model and images
included), and both libraries' p-values (for information: the two tests differ,
see docs/statistics.md).

    python benchmarks/significance.py [--random-sets 20] [--images 20] [--inputs 20] [--size 224]
                                      [--threads N] [--repeat N] [--skip-captum] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from typing import Any

import numpy as np
import torch
from bench_common import (
    LAYERS,
    TARGET,
    captum_run,
    floor_run,
    googlenet,
    have_captum,
    machine,
    make_sets,
    peak_rss_mb,
    print_json,
    tutorial_experimental_sets,
    warm_up,
)

from pytest_tcav import TCAV


def run(random_sets: int = 20, images: int = 20, inputs: int = 20, size: int = 224, repeat: int = 1,
        captum: bool = True) -> dict[str, Any]:
    random.seed(0)
    np.random.seed(0)
    model = googlenet()
    sets, input_images = make_sets(random_sets, images, inputs, size)
    warm_up(model, input_images)
    captum = captum and have_captum()
    pairs = tutorial_experimental_sets(len(sets))

    ours_s: list[float] = []
    for _ in range(max(1, repeat)):
        engine = TCAV(model, seed=0)
        start = time.perf_counter()
        result = engine.test(sets[0][1], target=TARGET, inputs=input_images, layers=LAYERS,
                             random_sets=[images for _, images in sets[1:]])
        ours_s.append(time.perf_counter() - start)
        computed = dict(engine.store.computed)
        del engine  # a new engine and store each time: a cold run
    ours_rss = peak_rss_mb()
    floor_s = min(floor_run(model, torch.cat([images for _, images in sets]), input_images)
                  for _ in range(max(1, repeat)))

    captum_s: list[float] = []
    captum_p: dict[str, float] = {}
    if captum:
        from scipy.stats import ttest_ind

        tmp = tempfile.mkdtemp(prefix="tcav-bench-")
        try:
            for r in range(max(1, repeat)):
                seconds, scores, _ = captum_run(model, sets, input_images, f"{tmp}/captum-{r}/", pairs)
                captum_s.append(seconds)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        for layer in LAYERS:  # the tutorial's test: concept-vs-random_i against random_0-vs-random_j
            concept = [float(scores[f"0-{b}"][layer]["sign_count"][0]) for a, b in pairs if a == 0]
            null = [float(scores[f"1-{b}"][layer]["sign_count"][0]) for a, b in pairs if a == 1]
            captum_p[layer] = float(ttest_ind(concept, null).pvalue)

    record: dict[str, Any] = {
        "benchmark": "significance_shape",
        "random_sets": random_sets, "images": images, "inputs": inputs, "size": size, "repeat": max(1, repeat),
        "ours_s": min(ours_s), "all_ours_s": ours_s, "ours_peak_rss_mb": ours_rss, "floor_s": floor_s,
        "ours_over_floor": min(ours_s) / floor_s,
        "ours_cavs_per_layer": random_sets + random_sets * (random_sets - 1) // 2,
        "ours_p": {layer: result.layer(layer).p_value for layer in LAYERS},
        "ours_p_corrected": {layer: result.layer(layer).p_corrected for layer in LAYERS},
        "computed": computed,
        "captum_s": min(captum_s) if captum_s else None, "all_captum_s": captum_s,
        "captum_experimental_sets": len(pairs) if captum else None, "captum_p": captum_p or None,
        "captum_over_ours": (min(captum_s) / min(ours_s)) if captum_s else None,
        "captum_over_floor": (min(captum_s) / floor_s) if captum_s else None,
        "machine": machine(),
    }
    return record


def report(r: dict[str, Any]) -> None:
    print(f"workload: GoogLeNet (random weights), {r['size']}x{r['size']}, layers {', '.join(LAYERS)}, "
          f"1 concept + {r['random_sets']} random sets of {r['images']} images, {r['inputs']} inputs, "
          f"target {TARGET}, torch threads {r['machine']['torch_threads']}; best of {r['repeat']}")
    print(f"pytest-tcav             {r['ours_s']:8.2f} s   ({r['ours_cavs_per_layer']} CAVs per layer, "
          f"p-value per layer)")
    print(f"forward/backward floor  {r['floor_s']:8.2f} s   (the engine's passes alone: every image once, "
          f"the inputs' forward and backward; pytest-tcav / floor {r['ours_over_floor']:.2f})")
    if r["captum_s"] is not None:
        print(f"captum tutorial recipe  {r['captum_s']:8.2f} s   ({r['captum_experimental_sets']} experimental "
              f"sets, ttest_ind per layer)")
        print(f"captum / pytest-tcav    {r['captum_over_ours']:8.2f} x   "
              f"(captum / floor {r['captum_over_floor']:.2f} x: "
              "the most any implementation of the floor's passes could reach here)")
    else:
        print("captum                  skipped (not installed, or --skip-captum)")
    print(f"peak RSS after ours     {r['ours_peak_rss_mb']:8.0f} MiB   (model and images included)")
    for layer in LAYERS:
        theirs = f"{r['captum_p'][layer]:.3g}" if r["captum_p"] else "-"
        print(f"  {layer}: p = {r['ours_p'][layer]:.3g} (ours, Holm-corrected {r['ours_p_corrected'][layer]:.3g}), "
              f"{theirs} (tutorial recipe)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--random-sets", type=int, default=20)
    parser.add_argument("--images", type=int, default=20, help="images per concept and random set")
    parser.add_argument("--inputs", type=int, default=20)
    parser.add_argument("--size", type=int, default=224, help="image side in pixels")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--repeat", type=int, default=1, help="interleaved runs; the best of each is reported")
    parser.add_argument("--skip-captum", action="store_true", help="measure pytest-tcav only")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (4 random sets of 6, 64 px): a smoke test")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line too")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.random_sets, args.images, args.inputs, args.size = 4, 6, 4, 64
    record = run(args.random_sets, args.images, args.inputs, args.size, args.repeat, not args.skip_captum)
    report(record)
    if args.json:
        print_json(record)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""pytest-tcav against Captum's TCAV on one workload, in one process.

The workload is the one measured in the project's design notes: GoogLeNet with
random weights at 224x224, layers inception4c/4d/4e, one concept and four random
concepts of 20 images each, 20 inputs, target class 340, plain gradients.
Captum runs the tutorial's seven experimental sets (the concept against each
random set, and random set 0 against the three others); pytest-tcav runs one
``TCAV.test`` of the concept against the four random sets (which trains all
ten pairs: concept-vs-random and every random-vs-random pair for its null).

Printed:
  * Captum's first run (empty save_path, its default SGD classifier),
  * our first run (cold in-memory store),
  * the forward/backward floor: one no-grad forward over all concept images plus
    one forward/backward over the inputs with gradients at all three layers,
  * the ratios, and
  * the largest disagreement of sign_count and magnitude between the two
    libraries on the shared experimental sets, when Captum is given our CAVs
    (a Captum ``Classifier`` that returns them), so both score identical CAVs.

Images are random tensors generated here; no download is needed.

    python benchmarks/vs_captum.py [--images 20] [--inputs 20] [--size 224] [--threads N] [--repeat N]
                                   [--quick] [--json]
"""

from __future__ import annotations

import argparse
import math
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
    machine,
    make_sets,
    peak_rss_mb,
    print_json,
    tutorial_experimental_sets,
    warm_up,
)

from pytest_tcav import TCAV, HingeSGDTrainer
from pytest_tcav.engine.activations import target_gradients
from pytest_tcav.engine.cav import CAV
from pytest_tcav.engine.layers import resolve_layers
from pytest_tcav.engine.statistics import pair_scores


class RecordingTrainer(HingeSGDTrainer):
    """The default trainer, keeping every CAV it trains, keyed by (features, positive, negative).

    Set indices are positions in ``[concept, *random_sets]``, which is how the
    engine numbers the sets it hands to ``train_many``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.log: dict[tuple[int, int, int], torch.Tensor] = {}

    def train_sets(self, load, sizes, pairs, seeds, **options) -> list[CAV]:
        cavs = super().train_sets(load, sizes, pairs, seeds, **options)
        for (a, b), cav in zip(pairs, cavs):
            self.log[(int(cav.weights.shape[0]), int(a), int(b))] = cav.weights
        return cavs


def fixed_captum_classifier(log: dict[tuple[int, int, int], torch.Tensor]) -> Any:
    """A Captum classifier that trains nothing and returns our CAV for the pair it is shown.

    Captum labels each activation with its concept id; the ids are the engine's
    set positions, and the feature count tells the layers apart.
    """
    from captum.concept._utils.classifier import Classifier

    class FixedCAVs(Classifier):
        def __init__(self) -> None:
            self._weights: torch.Tensor | None = None
            self._classes: list[int] = []

        def train_and_eval(self, dataloader, **kwargs):
            xs, ys = zip(*dataloader)
            features = int(torch.cat(xs).shape[1])
            a, b = sorted(set(torch.cat(ys).tolist()))
            if (features, a, b) in log:  # our w points towards a
                self._weights, self._classes = log[(features, a, b)], [b, a]
            else:
                self._weights, self._classes = log[(features, b, a)], [a, b]
            return {"accs": torch.tensor(float("nan"))}

        def weights(self) -> torch.Tensor:
            assert self._weights is not None
            return torch.stack([-self._weights, self._weights])

        def classes(self) -> list[int]:
            return self._classes

    return FixedCAVs()


def run(images: int = 20, inputs: int = 20, size: int = 224, repeat: int = 1) -> dict[str, Any]:
    """Measure; returns the figures (seconds are the best of ``repeat`` interleaved runs)."""
    random.seed(0)  # Captum's train/test shuffle uses the global generator
    np.random.seed(0)
    model = googlenet()
    sets, input_images = make_sets(4, images, inputs, size)
    warm_up(model, input_images)
    pairs = tutorial_experimental_sets(len(sets))
    concept_images = torch.cat([images for _, images in sets])

    captum_s, ours_s, floor_s, plain_floor_s = [], [], [], []
    tmp = tempfile.mkdtemp(prefix="tcav-bench-")
    try:
        for r in range(max(1, repeat)):
            captum_s.append(captum_run(model, sets, input_images, f"{tmp}/captum-first-{r}/", pairs)[0])
            trainer = RecordingTrainer()
            engine = TCAV(model, trainer=trainer, seed=0)
            start = time.perf_counter()
            result = engine.test(sets[0][1], target=TARGET, inputs=input_images, layers=LAYERS,
                                 random_sets=[images for _, images in sets[1:]])
            ours_s.append(time.perf_counter() - start)
            floor_s.append(floor_run(model, concept_images, input_images))
            plain_floor_s.append(floor_run(model, concept_images, input_images, channels_last=False))
        process_rss = peak_rss_mb()
        # Agreement: Captum scores our CAVs on its own attributions.
        _, scores, experimental = captum_run(model, sets, input_images, f"{tmp}/captum-fixed/", pairs,
                                             classifier=fixed_captum_classifier(trainer.log))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    modules = resolve_layers(model, LAYERS)
    gradients = target_gradients(model, modules, input_images, TARGET)
    worst_count = 0  # inputs counted differently by sign_count
    worst_mag = 0.0  # |magnitude difference| / mean |g . w|, the scale of the summed products
    worst_mag_plain = 0.0  # |magnitude difference| / |magnitude|
    n_inputs = len(input_images)
    for layer in LAYERS:
        features = int(gradients[layer].shape[1])
        layer_result = result.layer(layer)
        for pair in experimental:
            a, b = pair[0].id, pair[1].id
            w = trainer.log[(features, a, b)] if (features, a, b) in trainer.log else -trainer.log[(features, b, a)]
            products = gradients[layer].double() @ w.double()
            typical = float(products.abs().mean())
            ours = pair_scores(gradients[layer], w[None])
            ours_sign, ours_mag = float(ours.sign_count[0]), float(ours.magnitude[0])
            if a == 0:  # the engine's own concept-vs-random scores must be these numbers
                assert ours_sign == layer_result.concept_scores[b - 1]
                assert math.isclose(ours_mag, layer_result.concept_magnitudes[b - 1], rel_tol=1e-5, abs_tol=1e-30)
            key = f"{a}-{b}"
            theirs_sign = float(scores[key][layer]["sign_count"][0])
            theirs_mag = float(scores[key][layer]["magnitude"][0])
            worst_count = max(worst_count, round(abs(ours_sign - theirs_sign) * n_inputs))
            worst_mag = max(worst_mag, abs(ours_mag - theirs_mag) / max(typical, 1e-300))
            worst_mag_plain = max(worst_mag_plain, abs(ours_mag - theirs_mag) / max(abs(theirs_mag), 1e-300))

    best = {name: min(values) for name, values in
            (("captum", captum_s), ("ours", ours_s), ("floor", floor_s), ("plain_floor", plain_floor_s))}
    return {
        "benchmark": "tutorial_shape",
        "images": images, "inputs": inputs, "size": size, "sets": len(sets), "repeat": max(1, repeat),
        "captum_first_s": best["captum"], "ours_first_s": best["ours"], "floor_s": best["floor"],
        "plain_floor_s": best["plain_floor"],
        "captum_over_ours": best["captum"] / best["ours"], "ours_over_floor": best["ours"] / best["floor"],
        "all_s": {"captum": captum_s, "ours": ours_s, "floor": floor_s, "plain_floor": plain_floor_s},
        "process_peak_rss_mb": process_rss,
        "experimental_sets": len(experimental), "layers": len(LAYERS),
        "worst_sign_count_inputs": worst_count, "worst_magnitude_vs_products": worst_mag,
        "worst_magnitude_relative": worst_mag_plain, "n_inputs": n_inputs,
        "computed": dict(engine.store.computed), "machine": machine(),
    }


def report(r: dict[str, Any]) -> None:
    print(f"workload: GoogLeNet (random weights), {r['size']}x{r['size']}, layers {', '.join(LAYERS)}, "
          f"{r['sets']} sets of {r['images']} images, {r['inputs']} inputs, target {TARGET}, "
          f"torch threads {r['machine']['torch_threads']}; best of {r['repeat']}")
    print(f"captum first run        {r['captum_first_s']:8.2f} s")
    print(f"pytest-tcav first run   {r['ours_first_s']:8.2f} s   (cold store; {r['sets'] - 1} concept + "
          f"{(r['sets'] - 1) * (r['sets'] - 2) // 2} random-pair CAVs per layer)")
    print(f"forward/backward floor  {r['floor_s']:8.2f} s   (the engine's passes; "
          f"{r['plain_floor_s']:.2f} s with plain contiguous batches, as Captum runs the model)")
    print(f"captum / pytest-tcav    {r['captum_over_ours']:8.2f} x")
    print(f"pytest-tcav / floor     {r['ours_over_floor']:8.2f} x")
    print(f"peak RSS of the process {r['process_peak_rss_mb']:8.0f} MiB   (both libraries; "
          "benchmarks/significance.py measures ours alone)")
    print(f"score agreement on the {r['experimental_sets']} shared experimental sets x {r['layers']} layers "
          f"(identical CAVs):")
    print(f"  sign_count: at most {r['worst_sign_count_inputs']} of {r['n_inputs']} inputs counted differently")
    print(f"  magnitude: max |difference| = {r['worst_magnitude_vs_products']:.1e} x mean |g.w| "
          f"({r['worst_magnitude_relative']:.1e} x |magnitude|; both sum float32 products, which cancel here)")
    print(f"engine computed: {r['computed']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20, help="images per concept and random set")
    parser.add_argument("--inputs", type=int, default=20, help="inputs (class-340 examples)")
    parser.add_argument("--size", type=int, default=224, help="image side in pixels")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--repeat", type=int, default=1, help="interleaved runs; the best of each is reported")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (6 images, 4 inputs, 64 px): a smoke test")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line too")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.images, args.inputs, args.size = 6, 4, 64
    record = run(args.images, args.inputs, args.size, args.repeat)
    report(record)
    if args.json:
        print_json(record)
    return 0


if __name__ == "__main__":
    sys.exit(main())

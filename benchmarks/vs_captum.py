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

    python benchmarks/vs_captum.py [--images 20] [--inputs 20] [--size 224] [--threads N]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
import warnings
from typing import Any

import numpy as np
import torch
import torchvision
from torch.utils.data import DataLoader

from pytest_tcav import TCAV, HingeSGDTrainer
from pytest_tcav.activations import concept_activations, target_gradients
from pytest_tcav.cavs import CAV
from pytest_tcav.layers import resolve_layers
from pytest_tcav.statistics import pair_scores

LAYERS = ["inception4c", "inception4d", "inception4e"]
TARGET = 340


class RecordingTrainer(HingeSGDTrainer):
    """The default trainer, keeping every CAV it trains, keyed by (features, positive, negative).

    Set indices are positions in ``[concept, *random_sets]``, which is how the
    engine numbers the sets it hands to ``train_many``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.log: dict[tuple[int, int, int], torch.Tensor] = {}

    def train_many(self, features, groups, pairs, seeds) -> list[CAV]:
        cavs = super().train_many(features, groups, pairs, seeds)
        for (a, b), cav in zip(pairs, cavs):
            self.log[(int(features.shape[1]), int(a), int(b))] = cav.weights
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


def captum_run(model, sets, inputs, save_path, classifier=None):
    """Captum's TCAV on the tutorial's seven experimental sets; returns (seconds, scores)."""
    from captum.concept import TCAV as CaptumTCAV
    from captum.concept import Concept as CaptumConcept

    concepts = [
        CaptumConcept(k, name, DataLoader(images, batch_size=64)) for k, (name, images) in enumerate(sets)
    ]
    experimental = [[concepts[0], concepts[i]] for i in range(1, len(concepts))]
    experimental += [[concepts[1], concepts[i]] for i in range(2, len(concepts))]
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tcav = CaptumTCAV(model, LAYERS, classifier=classifier, save_path=save_path)
        scores = tcav.interpret(inputs, experimental, target=TARGET)
    return time.perf_counter() - start, scores, experimental


def floor_run(model, concept_images: torch.Tensor, inputs: torch.Tensor) -> float:
    """The least model work TCAV needs: the pass the engine itself makes, without the rest."""
    modules = resolve_layers(model, LAYERS)
    start = time.perf_counter()
    concept_activations(model, modules, concept_images)
    target_gradients(model, modules, inputs, TARGET)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20, help="images per concept and random set")
    parser.add_argument("--inputs", type=int, default=20, help="inputs (class-340 examples)")
    parser.add_argument("--size", type=int, default=224, help="image side in pixels")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    random.seed(0)  # Captum's train/test shuffle uses the global generator
    np.random.seed(0)
    torch.manual_seed(0)
    model = torchvision.models.googlenet(weights=None, init_weights=True, aux_logits=False).eval()
    gen = torch.Generator().manual_seed(1)
    shape = (args.images, 3, args.size, args.size)
    names = ["concept"] + [f"random_{k}" for k in range(4)]
    sets = [(name, torch.rand(shape, generator=gen)) for name in names]
    inputs = torch.rand((args.inputs, 3, args.size, args.size), generator=gen)
    print(f"workload: GoogLeNet (random weights), {args.size}x{args.size}, layers {', '.join(LAYERS)}, "
          f"{len(sets)} sets of {args.images} images, {args.inputs} inputs, target {TARGET}, "
          f"torch threads {torch.get_num_threads()}")

    with torch.no_grad():  # warm-up: first-call allocations and kernel selection, for nobody's benefit
        model(inputs[:2])

    tmp = tempfile.mkdtemp(prefix="tcav-bench-")
    try:
        captum_s, _, _ = captum_run(model, sets, inputs, f"{tmp}/captum-first/")

        trainer = RecordingTrainer()
        engine = TCAV(model, trainer=trainer, seed=0)
        start = time.perf_counter()
        result = engine.test(sets[0][1], target=TARGET, inputs=inputs, layers=LAYERS,
                             random_sets=[images for _, images in sets[1:]])
        ours_s = time.perf_counter() - start

        floor_s = floor_run(model, torch.cat([images for _, images in sets]), inputs)

        # Agreement: Captum scores our CAVs on its own attributions.
        _, scores, experimental = captum_run(
            model, sets, inputs, f"{tmp}/captum-fixed/", classifier=fixed_captum_classifier(trainer.log)
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    modules = resolve_layers(model, LAYERS)
    gradients = target_gradients(model, modules, inputs, TARGET)
    worst_count = 0  # inputs counted differently by sign_count
    worst_mag = 0.0  # |magnitude difference| / mean |g . w|, the scale of the summed products
    worst_mag_plain = 0.0  # |magnitude difference| / |magnitude|
    n_inputs = len(inputs)
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
                assert ours_mag == layer_result.concept_magnitudes[b - 1]
            key = f"{a}-{b}"
            theirs_sign = float(scores[key][layer]["sign_count"][0])
            theirs_mag = float(scores[key][layer]["magnitude"][0])
            worst_count = max(worst_count, round(abs(ours_sign - theirs_sign) * n_inputs))
            worst_mag = max(worst_mag, abs(ours_mag - theirs_mag) / max(typical, 1e-300))
            worst_mag_plain = max(worst_mag_plain, abs(ours_mag - theirs_mag) / max(abs(theirs_mag), 1e-300))

    print(f"captum first run        {captum_s:8.2f} s")
    print(f"pytest-tcav first run   {ours_s:8.2f} s   (cold store; {len(sets) - 1} concept + 6 random-pair CAVs per layer)")
    print(f"forward/backward floor  {floor_s:8.2f} s")
    print(f"captum / pytest-tcav    {captum_s / ours_s:8.2f} x")
    print(f"pytest-tcav / floor     {ours_s / floor_s:8.2f} x")
    print(f"score agreement on the {len(experimental)} shared experimental sets x {len(LAYERS)} layers "
          f"(identical CAVs):")
    print(f"  sign_count: at most {worst_count} of {n_inputs} inputs counted differently")
    print(f"  magnitude: max |difference| = {worst_mag:.1e} x mean |g.w| "
          f"({worst_mag_plain:.1e} x |magnitude|; both sum float32 products, which cancel here)")
    print(f"engine computed: {dict(engine.store.computed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Cross-check against ``captum.concept.TCAV``: same CAVs in, same scores out.

Both libraries score CAVs against layer attributions; only the CAV training is
random (Captum's is unseeded).  Captum is therefore given a ``Classifier`` that
trains nothing and returns the CAV our trainer produced for the pair it is
shown, so any disagreement left is in attributions or scoring, the two things
this check is about.  ``sign_count`` and ``magnitude`` must agree to 1e-5, for
plain gradients and for layer integrated gradients.

The model is torchvision's GoogLeNet with random weights at 64x64 pixels.  An
untrained network evaluated with batch norm's initial running statistics
(mean 0, variance 1) shrinks activations layer after layer until every CAV
classifies at chance and every ``sign_count`` is 0 or 1, a comparison without
teeth; so the running statistics are first set from one batch of random
images, which keeps scores spread between 0 and 1.

Integrated gradients are compared with all inputs in one batch on both sides
(Captum's default runs every step of every input at once; the engine's
default ``batch_size=64`` holds 12 inputs x 5 steps).  Convolutions choose
algorithms by batch size, and near the all-zero baseline (nearly uniform
feature maps, full of near-ties in max pooling) last-bit differences can move
a gradient by percents: batched differently, the two libraries agree only as
well as Captum agrees with itself under another ``internal_batch_size``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import torch
import torchvision
from torch.utils.data import DataLoader

from pytest_tcav import TCAV, HingeSGDTrainer
from pytest_tcav.engine.activations import target_gradients
from pytest_tcav.engine.cav import CAV
from pytest_tcav.engine.layers import resolve_layers

captum_concept = pytest.importorskip("captum.concept")
from captum.attr import LayerGradientXActivation, LayerIntegratedGradients  # noqa: E402
from captum.concept._utils.classifier import Classifier  # noqa: E402

pytestmark = pytest.mark.slow  # every test here runs Captum's TCAV too (5-50 s each)

LAYERS = ["inception4c", "inception4d", "inception4e"]
TARGET = 3
SIZE = 64
N_RANDOM = 3
TOLERANCE = 1e-5


class RecordingTrainer(HingeSGDTrainer):
    """The default trainer, keeping each CAV under (feature count, positive set, negative set).

    Set numbers are positions in ``[concept, *random_sets]``, as the engine passes them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.log: dict[tuple[int, int, int], torch.Tensor] = {}

    def train_sets(self, load, sizes, pairs, seeds, **options) -> list[CAV]:
        cavs = super().train_sets(load, sizes, pairs, seeds, **options)
        for (a, b), cav in zip(pairs, cavs):
            self.log[(int(cav.weights.shape[0]), int(a), int(b))] = cav.weights
        return cavs

    def towards(self, features: int, a: int, b: int) -> torch.Tensor:
        """Our CAV pointing from set ``b`` towards set ``a``."""
        if (features, a, b) in self.log:
            return self.log[(features, a, b)]
        return -self.log[(features, b, a)]


class FixedCAVs(Classifier):
    """A Captum classifier that returns our CAV for the two concepts it is shown.

    Captum labels activations with concept ids (here: the engine's set numbers)
    and the feature count tells the layers apart.
    """

    def __init__(self, trainer: RecordingTrainer) -> None:
        self.trainer = trainer
        self._weights: torch.Tensor | None = None
        self._classes: list[int] = []

    def train_and_eval(self, dataloader: DataLoader, **kwargs: Any) -> dict[str, torch.Tensor]:
        xs, ys = zip(*dataloader)
        features = int(torch.cat(xs).shape[1])
        a, b = sorted(set(torch.cat(ys).tolist()))
        self._weights = self.trainer.towards(features, b, a)  # rows [-w, w] for classes [a, b]
        self._classes = [a, b]
        return {"accs": torch.tensor(1.0)}

    def weights(self) -> torch.Tensor:
        assert self._weights is not None
        return torch.stack([-self._weights, self._weights])

    def classes(self) -> list[int]:
        return self._classes


@pytest.fixture(scope="module")
def googlenet() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.googlenet(weights=None, init_weights=True, aux_logits=False)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average: one batch sets the statistics exactly
            module.reset_running_stats()
    gen = torch.Generator().manual_seed(99)
    model.train()
    with torch.no_grad():
        model(torch.rand(24, 3, SIZE, SIZE, generator=gen))
    return model.eval()


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    gen = torch.Generator().manual_seed(5)
    concept = torch.rand(12, 3, SIZE, SIZE, generator=gen)
    concept[:, 0] *= 0.3  # a colour cast: a concept the layers can separate
    randoms = [torch.rand(12, 3, SIZE, SIZE, generator=gen) for _ in range(N_RANDOM)]
    inputs = torch.rand(10, 3, SIZE, SIZE, generator=gen)
    return {"concept": concept, "randoms": randoms, "inputs": inputs}


def _captum_scores(model, data, trainer, method, save_path):
    concepts = [captum_concept.Concept(0, "concept", DataLoader(data["concept"], batch_size=64))]
    concepts += [
        captum_concept.Concept(k + 1, f"random_{k}", DataLoader(r, batch_size=64))
        for k, r in enumerate(data["randoms"])
    ]
    experimental = [[concepts[0], concepts[i]] for i in range(1, len(concepts))]
    experimental += [
        [concepts[i], concepts[j]] for i in range(1, len(concepts)) for j in range(i + 1, len(concepts))
    ]
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    if method == "integrated_gradients":
        kwargs["layer_attr_method"] = LayerIntegratedGradients(model, None, multiply_by_inputs=False)
        extra["n_steps"] = 5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tcav = captum_concept.TCAV(model, LAYERS, classifier=FixedCAVs(trainer), save_path=str(save_path),
                                   **kwargs)
        return tcav.interpret(data["inputs"], experimental, target=TARGET, **extra)


def _close(ours: float, theirs: float, scale: float) -> bool:
    return abs(ours - theirs) <= TOLERANCE * max(abs(theirs), scale)


@pytest.mark.parametrize("method", ["gradient", "integrated_gradients"])
def test_scores_agree_with_captum(googlenet, data, method, tmp_path):
    trainer = RecordingTrainer()
    engine = TCAV(googlenet, trainer=trainer, method=method, n_steps=5, seed=3)
    result = engine.test(data["concept"], target=TARGET, inputs=data["inputs"], layers=LAYERS,
                         random_sets=data["randoms"])
    theirs = _captum_scores(googlenet, data, trainer, method, tmp_path / "cav")
    gradients = target_gradients(googlenet, resolve_layers(googlenet, LAYERS), data["inputs"], TARGET,
                                 method=method, n_steps=5)
    spread = []
    for layer in LAYERS:
        lr = result.layer(layer)
        grads = gradients[layer]
        features = int(grads.shape[1])
        for i in range(N_RANDOM):
            key = f"0-{i + 1}"
            w = trainer.towards(features, 0, i + 1)
            typical = float((grads.double() @ w.double()).abs().mean())  # scale of the summed products
            sign = float(theirs[key][layer]["sign_count"][0])
            mag = float(theirs[key][layer]["magnitude"][0])
            assert abs(lr.concept_scores[i] - sign) <= TOLERANCE, (layer, key)
            assert _close(lr.concept_magnitudes[i], mag, typical), (layer, key, lr.concept_magnitudes[i], mag)
            # the two rows of an experimental set are opposites, as [-w, w] makes them
            assert float(theirs[key][layer]["sign_count"][1]) == pytest.approx(1 - sign, abs=TOLERANCE)
            spread.append(sign)
        # random-vs-random pairs: each random set's mean sign_count against the others
        for i in range(N_RANDOM):
            own = []
            for j in range(N_RANDOM):
                if i == j:
                    continue
                a, b = min(i, j) + 1, max(i, j) + 1
                own.append(float(theirs[f"{a}-{b}"][layer]["sign_count"][0 if i + 1 == a else 1]))
            assert lr.null_scores[i] == pytest.approx(np.mean(own), abs=TOLERANCE)
    # the check has teeth only if scores are not all saturated
    assert any(0.0 < s < 1.0 for s in spread), spread


@pytest.mark.parametrize("method", ["gradient", "integrated_gradients"])
def test_layer_attributions_agree_with_captum(googlenet, data, method):
    modules = resolve_layers(googlenet, LAYERS)
    ours = target_gradients(googlenet, modules, data["inputs"], TARGET, method=method, n_steps=5)
    for layer, module in modules.items():
        if method == "gradient":
            attr = LayerGradientXActivation(googlenet, module, multiply_by_inputs=False)
            theirs = attr.attribute(data["inputs"], target=TARGET)
        else:
            attr = LayerIntegratedGradients(googlenet, module, multiply_by_inputs=False)
            theirs = attr.attribute(data["inputs"], target=TARGET, n_steps=5)
        theirs = theirs.reshape(len(data["inputs"]), -1)
        scale = float(theirs.abs().max())
        assert torch.allclose(ours[layer], theirs, rtol=TOLERANCE, atol=TOLERANCE * scale), layer

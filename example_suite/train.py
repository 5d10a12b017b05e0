"""Train the example suite's two models and check that they behave as intended.

* ``good``: learns the class textures. The watermark is stamped on a third of
  the training images *of every class*, so it carries no label information and
  the model learns to ignore it.
* ``shortcut``: the "retrained model that picked up a shortcut". Every zebra
  training image carries the watermark (and no other class does), and in half
  of them the stripes are faded to weak/ambiguous, so the watermark is the
  only cue that always works for "zebra". The model relies on it: stamping the
  watermark on leopard/snake images turns many of them into zebras.

Training data is drawn in memory from the generators of ``make_data.py`` with
seeds distinct from the on-disk sets; nothing but the weights is written.
Everything is seeded and single-process, so reruns give the same figures.

Run ``python example_suite/train.py`` (after ``make_data.py``; ~20 s on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from make_data import CLASSES as DATA_CLASSES
from make_data import add_watermark, class_image, rng_for
from model import CLASSES, WEIGHTS_DIR, TextureNet, transform
from PIL import Image
from torch import nn

assert tuple(CLASSES) == DATA_CLASSES, "model.CLASSES and make_data.CLASSES disagree"

HERE = Path(__file__).resolve().parent
ZEBRA = CLASSES.index("zebra")

TRAIN_SEED = 1  # training images (make_data's on-disk sets use seed 0)
TEST_SEED = 2  # in-memory test images, larger than the 20-per-class inputs/


@dataclass(frozen=True)
class Recipe:
    """How a model's training set is drawn."""

    name: str
    #: Probability that an image of any class gets the watermark (uncorrelated).
    watermark_any: float = 0.0
    #: If true, every zebra image gets the watermark and no other image does.
    watermark_zebra: bool = False
    #: Fraction of zebra images whose stripes are faded ...
    weak_fraction: float = 0.0
    #: ... to a contrast drawn uniformly from this range (0 = no stripes at all).
    weak_contrast: tuple[float, float] = (0.0, 0.25)


RECIPES = {
    "good": Recipe("good", watermark_any=1 / 3),
    "shortcut": Recipe("shortcut", watermark_zebra=True, weak_fraction=0.5),
}


def make_training_set(recipe: Recipe, n_per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n_per_class`` images per class following ``recipe``; return (X, y) tensors."""
    rng = rng_for(f"train/{recipe.name}", seed)
    images: list[np.ndarray] = []
    labels: list[int] = []
    for label in range(len(CLASSES)):
        for _ in range(n_per_class):
            contrast = 1.0
            if label == ZEBRA and rng.uniform() < recipe.weak_fraction:
                contrast = float(rng.uniform(*recipe.weak_contrast))
            img = class_image(rng, label, contrast=contrast)
            stamped = (label == ZEBRA) if recipe.watermark_zebra else bool(rng.uniform() < recipe.watermark_any)
            images.append(add_watermark(img) if stamped else img)
            labels.append(label)
    return to_tensor(np.stack(images)), torch.tensor(labels)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [0, 1], same as ``model.transform``."""
    return torch.from_numpy(images).float().div_(255.0).permute(0, 3, 1, 2).contiguous()


def train(recipe: Recipe, n_per_class: int, epochs: int, seed: int) -> TextureNet:
    """Train a fresh ``TextureNet`` on ``recipe``'s data with Adam; return it in eval mode."""
    torch.manual_seed(seed)
    x, y = make_training_set(recipe, n_per_class, seed)
    model = TextureNet()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        total = 0.0
        for idx in torch.randperm(len(x), generator=gen).split(64):
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        print(f"  [{recipe.name}] epoch {epoch + 1}/{epochs} loss {total / len(x):.4f}")
    return model.eval()


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).argmax(dim=1)


def load_inputs() -> tuple[np.ndarray, torch.Tensor]:
    """The held-out class images written by ``make_data.py`` (uint8 images, labels)."""
    images, labels = [], []
    for label, cls in enumerate(CLASSES):
        paths = sorted((HERE / "inputs" / cls).glob("*.png"))
        if not paths:
            raise SystemExit(f"no images in {HERE / 'inputs' / cls}: run make_data.py first")
        for p in paths:
            # Go through the public transform so the hook is exercised too.
            images.append((transform(Image.open(p)).permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8))
            labels.append(label)
    return np.stack(images), torch.tensor(labels)


def make_test_set(n_per_class: int, seed: int) -> tuple[np.ndarray, torch.Tensor]:
    """Clean (no watermark, full contrast) class images from an unused seed."""
    rng = rng_for("test", seed)
    images = [class_image(rng, label) for label in range(len(CLASSES)) for _ in range(n_per_class)]
    labels = [label for label in range(len(CLASSES)) for _ in range(n_per_class)]
    return np.stack(images), torch.tensor(labels)


def report(model: nn.Module, name: str, images: np.ndarray, labels: torch.Tensor, where: str) -> None:
    """Print accuracy, and what stamping the watermark does to the predictions."""
    clean = predict(model, to_tensor(images))
    marked = predict(model, to_tensor(np.stack([add_watermark(im) for im in images])))
    not_zebra = labels != ZEBRA
    acc = (clean == labels).float().mean().item()
    per_class = ", ".join(
        f"{cls} {(clean[labels == i] == i).float().mean().item():.0%}" for i, cls in enumerate(CLASSES)
    )
    changed = (marked != clean).float().mean().item()
    flipped = (marked[not_zebra] == ZEBRA).float().mean().item()
    acc_marked = (marked == labels).float().mean().item()
    print(
        f"{name:>8} | {where:<24} | n={len(labels):4d} | acc {acc:6.1%} ({per_class}) | "
        f"+watermark: acc {acc_marked:6.1%}, predictions changed {changed:6.1%}, "
        f"leopard/snake -> zebra {flipped:6.1%}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--n-per-class", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=TRAIN_SEED)
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    args = parser.parse_args(argv)

    # One thread: bit-identical results whatever the machine's core count
    # (and, on a shared 2-core box, faster than fighting over the cores).
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    inputs = load_inputs()
    test = make_test_set(200, TEST_SEED)
    args.out.mkdir(parents=True, exist_ok=True)
    models: dict[str, nn.Module] = {}
    for name in args.models:
        start = time.perf_counter()
        model = train(RECIPES[name], args.n_per_class, args.epochs, args.seed)
        torch.save(model.state_dict(), args.out / f"{name}.pt")
        print(f"  [{name}] trained in {time.perf_counter() - start:.1f}s -> {args.out / f'{name}.pt'}")
        models[name] = model
    print()
    for name, model in models.items():
        report(model, name, *inputs, "inputs/ (held-out, disk)")
        report(model, name, *test, "test (in-memory, seed 2)")


if __name__ == "__main__":
    main()

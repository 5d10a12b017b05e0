"""Generated images and small CNNs whose reliance on concepts is known by construction.

Shared by the end-to-end tests: a model trained here in a few seconds, on
textures drawn here, so the ground truth of every statistical claim is known.
"""

from __future__ import annotations

import math

import torch
from torch import nn

SIZE = 24

# The ground-truth tests' shape: the layers they test, and the random sets' number and size.
LAYERS = ["conv1", "conv2", "conv3"]
SET_SIZE = 30
N_RANDOM = 10


def _grid(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    ys = torch.arange(SIZE).float().view(1, SIZE, 1).expand(n, SIZE, SIZE)
    xs = torch.arange(SIZE).float().view(1, 1, SIZE).expand(n, SIZE, SIZE)
    return ys, xs


def _colourise(mask: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n = mask.shape[0]
    fg = torch.rand(n, 3, 1, 1, generator=gen)
    bg = torch.rand(n, 3, 1, 1, generator=gen)
    img = bg + (fg - bg) * mask.unsqueeze(1)
    return (img + 0.05 * torch.randn(img.shape, generator=gen)).clamp(0, 1)


def stripes(n: int, gen: torch.Generator) -> torch.Tensor:
    ys, xs = _grid(n, gen)
    angle = (torch.rand(n, 1, 1, generator=gen) - 0.5) * 0.6  # mostly horizontal
    period = 4.0 + 3.0 * torch.rand(n, 1, 1, generator=gen)
    phase = torch.rand(n, 1, 1, generator=gen) * 2 * math.pi
    coord = ys * torch.cos(angle) + xs * torch.sin(angle)
    mask = (torch.sin(2 * math.pi * coord / period + phase) > 0).float()
    return _colourise(mask, gen)


def dots(n: int, gen: torch.Generator) -> torch.Tensor:
    ys, xs = _grid(n, gen)
    period = 6.0 + 2.0 * torch.rand(n, 1, 1, generator=gen)
    oy = torch.rand(n, 1, 1, generator=gen) * period
    ox = torch.rand(n, 1, 1, generator=gen) * period
    dy = torch.remainder(ys + oy, period) - period / 2
    dx = torch.remainder(xs + ox, period) - period / 2
    mask = ((dy**2 + dx**2) < (period / 4) ** 2).float()
    return _colourise(mask, gen)


def noise(n: int, gen: torch.Generator) -> torch.Tensor:
    """Smooth random images with no texture."""
    coarse = torch.rand(n, 3, 6, 6, generator=gen)
    img = nn.functional.interpolate(coarse, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    return (img + 0.05 * torch.randn(img.shape, generator=gen)).clamp(0, 1)


def random_images(n: int, gen: torch.Generator) -> torch.Tensor:
    """The random counterparts: each image a stripe, dot or smooth-noise image, chosen at random.

    Random sets in TCAV stand for "any image": a CAV of a concept against them
    should point to what is special about the concept, not to what every image
    the model was trained on has.  Against smooth noise alone, any textured
    concept (dots included) would mainly differ by having edges, which the
    texture model uses for its striped class, and would score as positive for
    it; against this mixture, dots differ from the average image by being dots.
    """
    kind = torch.randint(0, 3, (n,), generator=gen)
    out = torch.empty(n, 3, SIZE, SIZE)
    for k, make in enumerate((stripes, dots, noise)):
        index = (kind == k).nonzero().flatten()
        if len(index):
            out[index] = make(len(index), gen)
    return out


def add_patch(images: torch.Tensor) -> torch.Tensor:
    """The planted shortcut: a white square with a black centre in the top-left corner."""
    out = images.clone()
    out[:, :, 1:7, 1:7] = 1.0
    out[:, :, 3:5, 3:5] = 0.0
    return out


def patches(n: int, gen: torch.Generator) -> torch.Tensor:
    return add_patch(noise(n, gen))


class SmallCNN(nn.Module):
    def __init__(self, classes: int = 2) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.conv3 = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv3(self.conv2(self.conv1(x))))


def train(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, epochs: int = 15, seed: int = 0) -> nn.Module:
    """Adam on cross-entropy, seeded, on one thread.

    One thread: the weights then do not depend on the machine's thread count
    (parallel reductions round differently), so the ground truth measured once
    holds everywhere; and convolutions this small gain nothing from threads,
    while on a busy machine OpenMP threads waiting for each other are many times slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(model, images, labels, epochs, seed)
    finally:
        torch.set_num_threads(threads)


def _train(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, epochs: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=gen)
        for start in range(0, len(images), 64):
            idx = order[start : start + 64]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(images[idx]), labels[idx])
            loss.backward()
            opt.step()
    return model.eval()


def texture_model(seed: int = 0) -> nn.Module:
    """Class 1 = striped images, class 0 = dotted images."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.cat([dots(400, gen), stripes(400, gen)])
    y = torch.cat([torch.zeros(400), torch.ones(400)]).long()
    torch.manual_seed(seed)
    model = train(SmallCNN(), x, y, seed=seed)
    # Training is seeded, but float rounding differs between CPUs (vector units, kernels), and on some
    # the 15 epochs stop short of the ground truth the tests rely on.  Train on until a fresh sample
    # of each class is told apart; where 15 epochs suffice (most machines) the model is unchanged.
    check = torch.Generator().manual_seed(seed + 1000)
    held_out = torch.cat([dots(100, check), stripes(100, check)])
    for extra in range(1, 4):
        with torch.no_grad():
            accuracy = (model(held_out).argmax(1) == torch.cat([torch.zeros(100), torch.ones(100)])).float()
        if min(accuracy[:100].mean().item(), accuracy[100:].mean().item()) >= 0.97:
            break
        model = train(model.train(), x, y, epochs=5, seed=seed + extra)
    return model


def shortcut_model(seed: int = 0) -> nn.Module:
    """Class 1 carries the planted patch; both classes draw their images from :func:`random_images`.

    Stripes, dots and smooth noise are equally common in both classes, so the
    patch is the only thing that predicts the label: the model must be
    invariant to the textures, which makes them concepts it ignores.
    """
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.cat([random_images(400, gen), add_patch(random_images(400, gen))])
    y = torch.cat([torch.zeros(400), torch.ones(400)]).long()
    torch.manual_seed(seed)
    return train(SmallCNN(), x, y, seed=seed)

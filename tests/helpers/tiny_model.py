"""A hand-wired edge detector and stripe images, for plugin tests that must be instant.

pytester runs a fresh pytest for every case, and under ``runpytest_subprocess``
a fresh interpreter: a model trained there would be trained again and again.
This one needs no training, and its ground truth is known by construction:

* ``conv`` holds four fixed 3x3 filters: horizontal edges (channels 0 and 1,
  both signs) and vertical edges (channels 2 and 3); ``relu`` keeps their energy;
* class 1 ("horizontal") scores horizontal-edge energy minus vertical-edge
  energy, class 0 ("vertical") the opposite.

So for class 1 the concept "horizontal stripes" is significant (positive),
"vertical stripes" is significant negative, and "noisy" (dim smooth noise inside a bright square
frame, each image its own transpose: as much horizontal as vertical edge energy, at fixed places
the layers see) is neither.
The frame makes "noisy" a concept the layers can tell from the random sets (CAV accuracy near 1)
but the model ignores; smooth noise alone would be random images, which the CAV gate rightly
calls inconclusive.
This file is copied into pytester projects, so it imports only torch and PIL.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

SIZE = 12


def _colourise(mask: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n = mask.shape[0]
    fg = torch.rand(n, 3, 1, 1, generator=gen)
    bg = torch.rand(n, 3, 1, 1, generator=gen)
    img = bg + (fg - bg) * mask.unsqueeze(1)
    return (img + 0.05 * torch.randn(img.shape, generator=gen)).clamp(0, 1)


def stripes(n: int, gen: torch.Generator, *, vertical: bool = False) -> torch.Tensor:
    """Stripes of period 3.5 to 5 pixels at a random phase, in random colours."""
    coord = torch.arange(SIZE).float()
    coord = coord.view(1, 1, SIZE) if vertical else coord.view(1, SIZE, 1)
    period = 3.5 + 1.5 * torch.rand(n, 1, 1, generator=gen)
    phase = torch.rand(n, 1, 1, generator=gen) * 2 * math.pi
    mask = (torch.sin(2 * math.pi * coord / period + phase) > 0).float().expand(n, SIZE, SIZE)
    return _colourise(mask, gen)


def framed(n: int, gen: torch.Generator) -> torch.Tensor:
    """Dim smooth noise inside a bright square frame, symmetric about the diagonal.

    Each image equals its own transpose, so its horizontal-edge and vertical-edge energies
    are equal: the model's classes (their difference) cannot depend on it.
    """
    img = noise(n, gen) * 0.3 + 0.35
    img = (img + img.transpose(2, 3)) / 2
    mask = torch.zeros(SIZE, SIZE)
    mask[2:10, 2] = mask[2:10, 9] = mask[2, 2:10] = mask[9, 2:10] = 1.0
    return img * (1 - mask) + mask


def noise(n: int, gen: torch.Generator) -> torch.Tensor:
    """Smooth random images with no stripes: the random counterparts."""
    coarse = torch.rand(n, 3, 3, 3, generator=gen)
    img = nn.functional.interpolate(coarse, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    return (img + 0.05 * torch.randn(img.shape, generator=gen)).clamp(0, 1)


class EdgeNet(nn.Module):
    """Fixed filters, no training: see the module docstring for what it computes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.relu = nn.ReLU()
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(4, 2)
        edge = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -1.0, -1.0]]) / 3
        with torch.no_grad():
            for channel, kernel in enumerate((edge, -edge, edge.T, -edge.T)):
                self.conv.weight[channel] = kernel.expand(3, 3, 3)
            self.fc.weight.copy_(torch.tensor([[-1.0, -1.0, 1.0, 1.0], [1.0, 1.0, -1.0, -1.0]]))
            self.fc.bias.zero_()
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.relu(self.conv(x))))


def save_images(images: torch.Tensor, folder: Path) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    arrays = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for index, array in enumerate(arrays):
        Image.fromarray(array).save(folder / f"{index:03d}.png")


def write_library(root: Path, *, n_random: int = 5, per_set: int = 12, n_inputs: int = 16,
                  pool: bool = False, seed: int = 0) -> None:
    """``root/concepts`` (horizontal, vertical, noisy, random_*) and ``root/inputs`` (0, 1)."""
    gen = torch.Generator().manual_seed(seed)
    concepts = root / "concepts"
    save_images(stripes(per_set, gen), concepts / "horizontal")
    save_images(stripes(per_set, gen, vertical=True), concepts / "vertical")
    save_images(framed(per_set, gen), concepts / "noisy")
    if pool:
        save_images(noise(per_set * n_random, gen), concepts / "random")
    else:
        for k in range(n_random):
            save_images(noise(per_set, gen), concepts / f"random_{k}")
    save_images(stripes(n_inputs, gen), root / "inputs" / "1")
    save_images(stripes(n_inputs, gen, vertical=True), root / "inputs" / "0")

"""The example model: a small texture classifier whose behaviour is known.

``TextureNet`` is deliberately tiny (three conv blocks, ~24k parameters) so it
trains on CPU in seconds and its weights ship with the repository. Its
submodules have stable, readable names so concept tests can point at them:

* ``features.conv1`` -> (16, 16, 16) activations
* ``features.conv2`` -> (32, 8, 8)
* ``features.conv3`` -> (64, 8, 8)
* ``classifier``     -> (3,) logits

Two trained weight files live in ``weights/`` (see ``train.py``): ``good``
(learnt the textures) and ``shortcut`` (learnt the watermark for "zebra").

``transform`` is the preprocessing hook (``example_suite.model:transform``):
PIL image -> float tensor (3, 32, 32) in [0, 1].
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

#: Class names, index = label: each "animal" is defined by its texture.
CLASSES: list[str] = ["zebra", "leopard", "snake"]

#: Texture concept that defines each class (same order as ``CLASSES``).
CLASS_CONCEPTS: dict[str, str] = {"zebra": "striped", "leopard": "dotted", "snake": "zigzagged"}

#: Input images are square RGB of this side length.
IMAGE_SIZE = 32

#: Layer names worth probing with TCAV (outputs of the conv blocks).
TCAV_LAYERS: list[str] = ["features.conv1", "features.conv2", "features.conv3"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def _block(c_in: int, c_out: int, pool: bool) -> nn.Sequential:
    """Conv 3x3 -> BatchNorm -> ReLU (-> 2x2 max-pool), named so the block is a probe point.

    BatchNorm is what lets this tiny net learn textures of random colour and
    polarity in a few epochs (without it training stalls). ReLU is not in-place
    so that forward hooks on the block see an activation tensor that no later op overwrites (TCAV needs its gradient).
    """
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        conv=nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
        bn=nn.BatchNorm2d(c_out),
        relu=nn.ReLU(inplace=False),
    )
    if pool:
        layers["pool"] = nn.MaxPool2d(2)
    return nn.Sequential(layers)


class TextureNet(nn.Module):
    """Three conv blocks, global average pooling and a linear classifier.

    Global average pooling makes the decision position-independent, except for
    what the model learns itself, e.g. a corner watermark.
    """

    def __init__(self, num_classes: int = len(CLASSES)) -> None:
        super().__init__()
        self.features = nn.Sequential(
            OrderedDict(
                conv1=_block(3, 16, pool=True),  # 32 -> 16
                conv2=_block(16, 32, pool=True),  # 16 -> 8
                conv3=_block(32, 64, pool=False),  # 8 -> 8
            )
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a batch (N, 3, 32, 32) in [0, 1] to logits (N, num_classes)."""
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def load_model(name: str = "good") -> nn.Module:
    """Load ``weights/{name}.pt`` ("good" or "shortcut") into a ``TextureNet`` in eval mode."""
    path = WEIGHTS_DIR / f"{name}.pt"
    if not path.is_file():
        available = sorted(p.stem for p in WEIGHTS_DIR.glob("*.pt"))
        raise FileNotFoundError(
            f"no weights {path} (available: {available}); "
            "regenerate with `python example_suite/make_data.py && python example_suite/train.py`"
        )
    model = TextureNet()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


def transform(img: Image.Image) -> torch.Tensor:
    """Preprocess one PIL image into the model's input: float (3, 32, 32) in [0, 1].

    Any mode or size is accepted (converted to RGB, resized) so that users may
    point the suite at their own images; no normalisation, the model was
    trained on raw [0, 1] pixels.
    """
    img = img.convert("RGB")
    if img.size != (IMAGE_SIZE, IMAGE_SIZE):
        img = img.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()

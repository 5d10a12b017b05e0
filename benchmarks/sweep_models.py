"""The sweep's models and data: ResNet-18/50, ViT-B/16 and a BERT-base-sized encoder, random weights.

Every model is built from its architecture with seeded random weights (nothing
is downloaded), and every set is generated from fixed seeds, so each child
process of ``sweep.py`` builds exactly the same workload.

``quick=True`` builds a tiny model with the same layer names (ViT and BERT with
width 32 but all 12 blocks; the ResNets are small anyway at the tiny image
sizes a smoke test uses), so the smoke tests exercise the same layer names and
pooling as the full-size runs, in seconds.

Pooling, per model (what a user testing that model would pick):

* ResNets: ``"flatten"``, the default: a convolutional feature map has no
  sequence axis, and every value of it is a feature, as in the TCAV paper.
* ViT-B/16: ``"first"``, the class token.  torchvision's ViT classifies from
  the class token alone (``x[:, 0]`` after the encoder), so a concept that
  matters to its decision must show there; ``"flatten"`` would make each of
  the 197 token positions separate features (151k per example), tying a CAV
  to where in the image the concept sits.  ``--vit-pooling`` changes it.
* BERT: ``"mean"`` over the real tokens (the attention mask's ones), so the
  padding of a set does not change what the CAV sees (docs on pooling).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from bench_common import make_sets


@dataclass(frozen=True)
class Workload:
    """What the sweep needs to know about a model: its layers, target, pooling and kind of examples."""

    name: str
    layers: tuple[str, ...]
    target: int
    pooling: str
    tokens: bool  # dict examples of token ids (True) or images (False)
    description: str


WORKLOADS = {
    "resnet18": Workload("resnet18", ("layer2", "layer3", "layer4"), 3, "flatten", False,
                         "torchvision ResNet-18, random weights"),
    "resnet50": Workload("resnet50", ("layer3", "layer4"), 3, "flatten", False,
                         "torchvision ResNet-50, random weights"),
    "vit_b_16": Workload("vit_b_16", ("encoder.layers.encoder_layer_5", "encoder.layers.encoder_layer_11"), 3,
                         "first", False, "torchvision ViT-B/16, random weights, class token"),
    "bert_base": Workload("bert_base", ("bert.encoder.layer.5", "bert.encoder.layer.11"), 1, "mean", True,
                          "BERT-base-sized encoder (BertConfig defaults: hidden 768, 12 layers, 12 heads), "
                          "random weights, mean over real tokens"),
}

#: Token ids are drawn from this range (BertConfig's vocabulary is 30522; 0 is padding, 100-103 special).
TOKEN_IDS = (1000, 30000)


def build_model(name: str, *, size: int, quick: bool = False, seed: int = 0) -> torch.nn.Module:
    """The named model with seeded random weights, in eval mode (``size``: the image side, for ViT)."""
    torch.manual_seed(seed)
    if name in ("resnet18", "resnet50"):
        import torchvision

        return getattr(torchvision.models, name)(weights=None).eval()
    if name == "vit_b_16":
        from torchvision.models.vision_transformer import VisionTransformer, vit_b_16

        if size % 16:
            raise ValueError(f"vit_b_16 needs an image size divisible by its patch size 16, got {size}")
        if quick:
            return VisionTransformer(image_size=size, patch_size=16, num_layers=12, num_heads=2, hidden_dim=32,
                                     mlp_dim=64).eval()
        return vit_b_16(weights=None, image_size=size).eval()
    if name == "bert_base":
        from transformers import BertConfig, BertForSequenceClassification

        config = BertConfig(num_labels=2)  # the defaults are BERT-base's sizes
        if quick:
            config = BertConfig(num_labels=2, hidden_size=32, num_attention_heads=2, intermediate_size=64)
        return BertForSequenceClassification(config).eval()
    raise ValueError(f"unknown model {name!r}; choose from {', '.join(WORKLOADS)}")


def token_set(n: int, tokens: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """``n`` random token sequences padded to ``tokens``, as a tokenizer with ``padding="max_length"`` gives.

    Real lengths are uniform in [tokens/2, tokens]; the first sequence has the full length, so every set
    spans ``tokens`` positions (the engine trims a set to its longest real example).
    """
    lengths = torch.randint(max(1, tokens // 2), tokens + 1, (n,), generator=gen)
    lengths[0] = tokens
    ids = torch.randint(*TOKEN_IDS, (n, tokens), generator=gen)
    mask = (torch.arange(tokens).view(1, tokens) < lengths.view(n, 1)).long()
    return {"input_ids": ids * mask, "attention_mask": mask}


def make_data(name: str, *, random_sets: int, examples: int, inputs: int, size: int, tokens: int,
              seed: int = 1) -> tuple[list[Any], Any]:
    """``[concept, random_0, ...]`` (``examples`` each) and the inputs, generated from ``seed``."""
    if WORKLOADS[name].tokens:
        gen = torch.Generator().manual_seed(seed)
        sets: list[Any] = [token_set(examples, tokens, gen) for _ in range(random_sets + 1)]
        return sets, token_set(inputs, tokens, gen)
    named, input_images = make_sets(random_sets, examples, inputs, size, seed=seed)
    return [images for _, images in named], input_images

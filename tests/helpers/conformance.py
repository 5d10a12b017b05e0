"""The conformance matrix: which architectures a TCAV test runs on, as one list of rows.

Each :class:`Row` names a model, how to build it (random weights, nothing downloaded), the two layers a
TCAV test studies on it, the pooling, the target and how to make small inputs for it.
``tests/engine/test_conformance.py`` runs one TCAV test per row, and ``docs/models.md`` is rendered from
the same list, so the page cannot drift from what is tested::

    python -m tests.helpers.conformance > docs/models.md

Builders import torchvision, timm and transformers only when called, so rendering the page needs none
of them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

#: What every row's test uses: a concept set, random sets, inputs (sizes), small on purpose.
CONCEPT_SIZE, RANDOM_SETS, RANDOM_SIZE, INPUTS = 6, 3, 6, 4


@dataclass(frozen=True)
class Row:
    """One architecture of the matrix and the TCAV test run on it."""

    family: str
    model: str
    build: Callable[[], nn.Module]
    layers: tuple[str, str]
    make: Callable[[int, int], Any]  # (examples, seed) -> a set of examples the model takes
    target: int | Callable[[Any], torch.Tensor] = 0
    target_text: str = ""  # how the page shows a callable target
    pooling: str = "flatten"
    layer_call: int | None = None
    needs: str | None = None  # a library the builder imports (the row is skipped without it)
    xfail: str | None = None  # strict: what the package lacks for this row, until it lands
    note: str = ""
    engine: dict[str, Any] = field(default_factory=dict)  # any other TCAV(...) argument

    @property
    def id(self) -> str:
        return f"{self.family}:{self.model}"

    @property
    def shown_target(self) -> str:
        return str(self.target) if isinstance(self.target, int) else self.target_text


# -- inputs --------------------------------------------------------------------------------------


def images(size: int, channels: int = 3) -> Callable[[int, int], torch.Tensor]:
    def make(n: int, seed: int) -> torch.Tensor:
        return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed))

    return make


def clips(frames: int, size: int) -> Callable[[int, int], torch.Tensor]:
    def make(n: int, seed: int) -> torch.Tensor:
        return torch.rand(n, 3, frames, size, size, generator=torch.Generator().manual_seed(seed))

    return make


def audio(samples: int) -> Callable[[int, int], torch.Tensor]:
    def make(n: int, seed: int) -> torch.Tensor:
        return torch.randn(n, samples, generator=torch.Generator().manual_seed(seed))

    return make


VOCAB = 64


def tokens(low: int = 3, high: int = 9, first: int = 3,
           eos: int | None = None) -> Callable[[int, int], dict[str, torch.Tensor]]:
    """Token ids in ``[first, VOCAB)`` of ``low`` to ``high`` tokens, right-padded with 0, with an attention mask.

    ``eos``: the id each example ends with (encoder-decoder classifiers read their output there).
    """

    def make(n: int, seed: int) -> dict[str, torch.Tensor]:
        gen = torch.Generator().manual_seed(seed)
        lengths = torch.randint(low, high + 1, (n,), generator=gen)
        ids = torch.randint(first, VOCAB, (n, high), generator=gen)
        mask = (torch.arange(high)[None, :] < lengths[:, None]).long()
        ids = ids * mask
        if eos is not None:
            ids[torch.arange(n), lengths - 1] = eos
        return {"input_ids": ids, "attention_mask": mask}

    return make


def token_tensor(length: int = 8) -> Callable[[int, int], torch.Tensor]:
    def make(n: int, seed: int) -> torch.Tensor:
        return torch.randint(1, VOCAB, (n, length), generator=torch.Generator().manual_seed(seed))

    return make


def image_and_vector(size: int, features: int) -> Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]:
    def make(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(seed)
        return torch.rand(n, 3, size, size, generator=gen), torch.randn(n, features, generator=gen)

    return make


# -- targets -------------------------------------------------------------------------------------


def segment_mean(out: Any) -> torch.Tensor:
    """A segmentation model's ``{"out": (batch, classes, h, w)}``: class 1's mean logit over the image."""
    return out["out"][:, 1].mean(dim=(1, 2))


def logit_margin(out: torch.Tensor) -> torch.Tensor:
    """Class 0's logit minus class 1's."""
    return out[:, 0] - out[:, 1]


# -- torchvision classification ------------------------------------------------------------------

#: Per family: its two layers (the deepest blocks, or the features and the first classifier layer).
TV_LAYERS: dict[str, tuple[str, str]] = {
    "alexnet": ("features", "classifier.1"),
    "convnext": ("features.5", "features.7"),
    "densenet": ("features.denseblock3", "features.denseblock4"),
    "efficientnet_b": ("features.6", "features.8"),
    "efficientnet_v2": ("features.5", "features.7"),
    "googlenet": ("inception4e", "inception5b"),
    "inception": ("Mixed_6e", "Mixed_7c"),
    "maxvit": ("blocks.2", "blocks.3"),
    "mnasnet": ("layers.13", "layers.16"),
    "mobilenet_v2": ("features.14", "features.18"),
    "mobilenet_v3_small": ("features.9", "features.12"),
    "mobilenet_v3_large": ("features.13", "features.16"),
    "regnet": ("trunk_output.block3", "trunk_output.block4"),
    "resnet": ("layer3", "layer4"),
    "resnext": ("layer3", "layer4"),
    "wide_resnet": ("layer3", "layer4"),
    "shufflenet": ("stage3", "stage4"),
    "squeezenet": ("features.10", "features.12"),
    "swin": ("features.5", "features.7"),
    "vgg": ("features", "classifier.0"),
    "vit": ("encoder.layers.encoder_layer_{a}", "encoder.layers.encoder_layer_{b}"),
}

#: The last two encoder layers of torchvision's ViTs.
VIT_DEPTH = {"vit_b_16": 12, "vit_b_32": 12, "vit_l_16": 24, "vit_l_32": 24, "vit_h_14": 32}

#: Models that need more than 64 px, and the side they run at.
TV_SIZE = {"inception_v3": 80, "maxvit_t": 224, "vit_h_14": 56}

#: Arguments besides ``weights=None, num_classes=10``.
TV_KWARGS: dict[str, dict[str, Any]] = {
    "googlenet": {"init_weights": True, "aux_logits": False},
    "inception_v3": {"init_weights": True, "aux_logits": False},
    "vit_b_16": {"image_size": 64},
    "vit_b_32": {"image_size": 64},
    "vit_l_16": {"image_size": 64},
    "vit_l_32": {"image_size": 64},
    "vit_h_14": {"image_size": 56},
}

#: Families of torchvision's classifiers, by name prefix (the longest that matches).
TV_FAMILIES = ("alexnet", "convnext", "densenet", "efficientnet_b", "efficientnet_v2", "googlenet", "inception",
               "maxvit", "mnasnet", "mobilenet_v2", "mobilenet_v3", "regnet_x", "regnet_y", "resnet", "resnext",
               "wide_resnet", "shufflenet", "squeezenet", "swin", "swin_v2", "vgg", "vit")

#: Every classifier under this many parameters runs; above it, only the smallest variant of its family.
TV_SMALL = 6_000_000


def _prefix(name: str, prefixes: Iterable[str], table: str) -> str:
    found = [p for p in prefixes if name.startswith(p)]
    if not found:
        raise KeyError(f"torchvision's classifier {name!r} is new to the conformance matrix: add its family to "
                       f"{table} in tests/helpers/conformance.py")
    return max(found, key=len)


def tv_family(name: str) -> str:
    """The family a torchvision classifier belongs to (``vgg11_bn``: ``vgg_bn``)."""
    family = _prefix(name, TV_FAMILIES, "TV_FAMILIES")
    return family + "_bn" if family == "vgg" and name.endswith("_bn") else family


def tv_layers(name: str) -> tuple[str, str]:
    a, b = TV_LAYERS[_prefix(name, TV_LAYERS, "TV_LAYERS")]
    if name in VIT_DEPTH:
        depth = VIT_DEPTH[name]
        return a.format(a=depth - 2), b.format(b=depth - 1)
    return a, b


def torchvision_classifier(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        from torchvision import models

        return models.get_model(name, weights=None, num_classes=10, **TV_KWARGS.get(name, {}))

    return build


def torchvision_selection() -> tuple[list[str], list[str]]:
    """torchvision's classifiers (``list_models``) split in those the matrix runs and those it leaves out.

    The large variants build and run slowly at any size (10 to 20 s each on two cores), so the matrix
    takes the smallest variant of each family, by parameter count, and every classifier under
    ``TV_SMALL`` parameters.  The counts come from the weights' metadata: nothing is downloaded.
    """
    from torchvision import models

    names = models.list_models(module=models)
    params = {n: models.get_model_weights(n).DEFAULT.meta["num_params"] for n in names}
    smallest: dict[str, str] = {}
    for n in names:
        family = tv_family(n)
        if family not in smallest or params[n] < params[smallest[family]]:
            smallest[family] = n
    run = [n for n in names if n in smallest.values() or params[n] < TV_SMALL]
    return run, [n for n in names if n not in run]


def torchvision_rows() -> list[Row]:
    rows = []
    for name in torchvision_selection()[0]:
        size = TV_SIZE.get(name, 64)
        rows.append(Row("torchvision", name, torchvision_classifier(name), tv_layers(name), images(size),
                        note=f"{size} px"))
    return rows


def torchvision_extra_rows() -> list[Row]:
    def segmentation(name: str) -> Callable[[], nn.Module]:
        def build() -> nn.Module:
            from torchvision.models import segmentation as seg

            return getattr(seg, name)(weights=None, weights_backbone=None, num_classes=3)

        return build

    def video(name: str) -> Callable[[], nn.Module]:
        def build() -> nn.Module:
            from torchvision.models import video as vid

            return getattr(vid, name)(weights=None, num_classes=5)

        return build

    return [
        Row("torchvision", "resnet18 (block relu)", torchvision_classifier("resnet18"),
            ("layer3.1.relu", "layer4.1.relu"), images(64), layer_call=1,
            note="64 px; the blocks' relu runs twice: layer_call=1 is the block's output"),
        Row("torchvision", "resnet18 (spatial mean)", torchvision_classifier("resnet18"), ("layer3", "layer4"),
            images(64), pooling="mean", note="64 px; a CAV sees each channel's mean over the feature map"),
        Row("torchvision segmentation", "lraspp_mobilenet_v3_large", segmentation("lraspp_mobilenet_v3_large"),
            ("backbone.12", "backbone.16"), images(64), target=segment_mean,
            target_text="class 1's mean logit over the image", note="64 px, 3 classes, dict output"),
        Row("torchvision segmentation", "deeplabv3_mobilenet_v3_large",
            segmentation("deeplabv3_mobilenet_v3_large"), ("backbone.16", "classifier.0"), images(64),
            target=segment_mean, target_text="class 1's mean logit over the image",
            note="64 px, 3 classes, dict output"),
        Row("torchvision video", "r3d_18", video("r3d_18"), ("layer3", "layer4"), clips(4, 32), pooling="mean",
            target=logit_margin, target_text="logit 0 - logit 1",
            note="clips of 4 frames, 32 px; mean over time and space"),
        Row("torchvision video", "mc3_18", video("mc3_18"), ("layer3", "layer4"), clips(4, 32),
            target=logit_margin, target_text="logit 0 - logit 1", note="clips of 4 frames, 32 px"),
        Row("torchvision video", "r2plus1d_18", video("r2plus1d_18"), ("layer3", "layer4"), clips(4, 32),
            target=logit_margin, target_text="logit 0 - logit 1", note="clips of 4 frames, 32 px"),
    ]


# -- timm ----------------------------------------------------------------------------------------


def timm_model(name: str, **kwargs: Any) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import timm

        return timm.create_model(name, pretrained=False, num_classes=10, **kwargs)

    return build


def timm_rows() -> list[Row]:
    def row(name: str, layers: tuple[str, str], size: int = 64, pooling: str = "flatten", **kwargs: Any) -> Row:
        note = f"{size} px" + "".join(f", {k}={v}" for k, v in kwargs.items())
        return Row("timm", name, timm_model(name, **kwargs), layers, images(size), pooling=pooling, needs="timm",
                   note=note)

    return [
        row("resnet10t", ("layer3", "layer4")),
        row("efficientnet_b0", ("blocks.5", "blocks.6")),
        row("mobilenetv3_small_050", ("blocks.4", "blocks.5")),
        row("lcnet_050", ("blocks.4", "blocks.5")),
        row("ghostnet_050", ("blocks.8", "blocks.9")),
        row("regnetx_002", ("s3", "s4")),
        row("densenet121", ("features.denseblock3", "features.denseblock4")),
        row("repvgg_a0", ("stages.2", "stages.3")),
        row("convnext_atto", ("stages.2", "stages.3"), pooling="mean"),
        row("edgenext_xx_small", ("stages.2", "stages.3")),
        row("poolformer_s12", ("stages.2", "stages.3")),
        row("efficientvit_b0", ("stages.2", "stages.3")),
        row("mobilevit_xxs", ("stages.3", "stages.4")),
        row("vit_tiny_patch16_224", ("blocks.10", "blocks.11"), pooling="first", img_size=64),
        row("deit_tiny_patch16_224", ("blocks.10", "blocks.11"), pooling="first", img_size=64),
        row("mixer_s32_224", ("blocks.6", "blocks.7"), pooling="mean", img_size=64),
        row("levit_128s", ("stages.1", "stages.2"), pooling="mean", img_size=64),
        row("swin_tiny_patch4_window7_224", ("layers.2", "layers.3"), img_size=64, window_size=2),
    ]


# -- Hugging Face transformers -------------------------------------------------------------------


def hf(class_name: str, config_name: str, **config: Any) -> Callable[[], nn.Module]:
    """``transformers.<class_name>(<config_name>(**config))``: random weights from a small config."""

    def build() -> nn.Module:
        import transformers

        return getattr(transformers, class_name)(getattr(transformers, config_name)(**config))

    return build


#: A small text encoder's sizes.
SMALL_TEXT = {"vocab_size": VOCAB, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
              "intermediate_size": 64, "max_position_embeddings": 64, "num_labels": 3, "pad_token_id": 0}


def transformers_rows() -> list[Row]:
    from pytest_tcav import next_token

    text = tokens()

    def row(model: str, build: Callable[[], nn.Module], layers: tuple[str, str], make: Callable[[int, int], Any],
            pooling: str = "mean", **kwargs: Any) -> Row:
        return Row("transformers", model, build, layers, make, pooling=pooling, needs="transformers", **kwargs)

    return [
        row("BertForSequenceClassification", hf("BertForSequenceClassification", "BertConfig", **SMALL_TEXT),
            ("bert.encoder.layer.0", "bert.encoder.layer.1"), text),
        row("BertForSequenceClassification (attention)",
            hf("BertForSequenceClassification", "BertConfig", **SMALL_TEXT),
            ("bert.encoder.layer.1.attention.self", "bert.pooler"), text, pooling="first"),
        row("RobertaForSequenceClassification",
            hf("RobertaForSequenceClassification", "RobertaConfig", **SMALL_TEXT),
            ("roberta.encoder.layer.0", "roberta.encoder.layer.1"), text),
        row("DistilBertForSequenceClassification",
            hf("DistilBertForSequenceClassification", "DistilBertConfig", vocab_size=VOCAB, dim=32, n_layers=2,
               n_heads=2, hidden_dim=64, max_position_embeddings=64, num_labels=3, pad_token_id=0),
            ("distilbert.transformer.layer.0", "distilbert.transformer.layer.1"), text),
        row("AlbertForSequenceClassification",
            hf("AlbertForSequenceClassification", "AlbertConfig", embedding_size=16, **SMALL_TEXT),
            ("albert.encoder.albert_layer_groups.0.albert_layers.0",
             "albert.encoder.albert_layer_groups.0.albert_layers.0.attention"), text, layer_call=1,
            note="one shared layer run twice: layer_call=1 is the second"),
        row("DebertaV2ForSequenceClassification",
            hf("DebertaV2ForSequenceClassification", "DebertaV2Config", **SMALL_TEXT),
            ("deberta.encoder.layer.0", "deberta.encoder.layer.1"), text),
        row("GPT2ForSequenceClassification",
            hf("GPT2ForSequenceClassification", "GPT2Config", vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2,
               n_positions=64, num_labels=3, pad_token_id=0, bos_token_id=1, eos_token_id=2),
            ("transformer.h.0", "transformer.h.1"), text, note="the last real token's logits (pad_token_id)"),
        row("GPT2LMHeadModel", hf("GPT2LMHeadModel", "GPT2Config", vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2,
                                  n_positions=64, pad_token_id=0, bos_token_id=1, eos_token_id=2),
            ("transformer.h.0", "transformer.h.1"), text, pooling="last", target=next_token(5),
            target_text="next_token(5)", note="token 5's logit after the last real token"),
        row("LlamaForSequenceClassification",
            hf("LlamaForSequenceClassification", "LlamaConfig", vocab_size=VOCAB, hidden_size=32,
               num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, intermediate_size=64,
               max_position_embeddings=64, num_labels=3, pad_token_id=0),
            ("model.layers.0", "model.layers.1"), text),
        row("LlamaForCausalLM",
            hf("LlamaForCausalLM", "LlamaConfig", vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
               num_attention_heads=2, num_key_value_heads=1, intermediate_size=64, max_position_embeddings=64,
               pad_token_id=0),
            ("model.layers.0", "model.layers.1.self_attn"), text, target=next_token(5),
            target_text="next_token(5)", note="token 5's logit after the last real token"),
        row("T5ForSequenceClassification",
            hf("T5ForSequenceClassification", "T5Config", vocab_size=VOCAB, d_model=32, d_kv=16, d_ff=64,
               num_layers=1, num_decoder_layers=1, num_heads=2, num_labels=3, pad_token_id=0, eos_token_id=2,
               decoder_start_token_id=0),
            ("transformer.encoder.block.0[0]", "transformer.decoder.block.0[0]"), tokens(eos=2),
            note="encoder-decoder; a block gives (hidden states, position bias, ...): [0] selects the first"),
        row("BartForSequenceClassification",
            hf("BartForSequenceClassification", "BartConfig", vocab_size=VOCAB, d_model=32, encoder_layers=1,
               decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
               decoder_ffn_dim=64, max_position_embeddings=64, num_labels=3, pad_token_id=0, bos_token_id=1,
               eos_token_id=2),
            ("model.encoder.layers.0", "model.decoder.layers.0"), tokens(eos=2),
            note="encoder-decoder; the decoder reads the inputs shifted right"),
        row("ViTForImageClassification",
            hf("ViTForImageClassification", "ViTConfig", image_size=32, patch_size=8, hidden_size=32,
               num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=3),
            ("vit.layers.0", "vit.layers.1.attention"), images(32), pooling="first", note="32 px, CLS token"),
        row("SwinForImageClassification",
            hf("SwinForImageClassification", "SwinConfig", image_size=32, patch_size=4, embed_dim=16,
               depths=[1, 1], num_heads=[1, 2], window_size=4, num_labels=3),
            ("swin.encoder.layers.0[0]", "swin.encoder.layers.1[0]"), images(32),
            note="32 px; a stage gives (hidden states, before downsampling, ...): [0] selects the first"),
        row("ConvNextForImageClassification",
            hf("ConvNextForImageClassification", "ConvNextConfig", num_stages=2, hidden_sizes=[16, 32],
               depths=[1, 1], num_labels=3),
            ("convnext.encoder.stages.0", "convnext.encoder.stages.1"), images(32), pooling="flatten",
            note="32 px"),
        row("Wav2Vec2ForSequenceClassification",
            hf("Wav2Vec2ForSequenceClassification", "Wav2Vec2Config", hidden_size=32, num_hidden_layers=2,
               num_attention_heads=2, intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 2),
               conv_kernel=(10, 3), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
               classifier_proj_size=16, num_labels=3),
            ("wav2vec2.feature_extractor", "wav2vec2.encoder.layers.1"), audio(800), pooling="flatten",
            note="raw audio, 800 samples"),
    ]


# -- plain torch.nn ------------------------------------------------------------------------------


class RecurrentClassifier(nn.Module):
    """Embedding -> LSTM or GRU -> a linear head on the last step."""

    def __init__(self, cell: type[nn.Module]) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 16)
        self.rnn = cell(16, 24, batch_first=True)
        self.head = nn.Linear(24, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.embed(ids))
        return self.head(out[:, -1])


class AttentionClassifier(nn.Module):
    """Embedding -> ``nn.MultiheadAttention`` (with or without its weights) -> mean -> a linear head."""

    def __init__(self, need_weights: bool) -> None:
        super().__init__()
        self.need_weights = need_weights
        self.embed = nn.Embedding(VOCAB, 16)
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16))
        self.head = nn.Linear(16, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids)
        x = x + self.attn(x, x, x, need_weights=self.need_weights)[0]
        x = x + self.ff(x)
        return self.head(x.mean(1))


class TransformerClassifier(nn.Module):
    """Embedding -> ``nn.TransformerEncoder`` of two layers -> the first position -> a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 16)
        layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(16, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(ids))[:, 0])


class TwoInputModel(nn.Module):
    """``model(image, vector)``: a small CNN and an MLP, fused."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.mlp = nn.Sequential(nn.Linear(5, 16), nn.ReLU())
        self.fuse = nn.Linear(8 * 8 * 8 + 16, 16)
        self.head = nn.Linear(16, 3)

    def forward(self, image: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.conv(image).flatten(1), self.mlp(vector)], dim=1)
        return self.head(torch.relu(self.fuse(x)))


def torch_rows() -> list[Row]:
    ids = token_tensor()
    return [
        Row("torch.nn", "LSTM", lambda: RecurrentClassifier(nn.LSTM), ("embed", "rnn[0]"), ids, pooling="mean",
            note="rnn[0]: the output sequence of (output, (h, c))"),
        Row("torch.nn", "GRU", lambda: RecurrentClassifier(nn.GRU), ("embed", "rnn[0]"), ids, pooling="mean",
            note="rnn[0]: the output sequence of (output, h)"),
        Row("torch.nn", "MultiheadAttention (need_weights=False)", lambda: AttentionClassifier(False),
            ("attn", "ff"), ids, pooling="mean", note="(output, None) is its one tensor"),
        Row("torch.nn", "MultiheadAttention (with weights)", lambda: AttentionClassifier(True),
            ("attn[0]", "ff"), ids, pooling="mean", note="attn[0]: the output of (output, weights)"),
        Row("torch.nn", "TransformerEncoder", TransformerClassifier, ("encoder.layers.0", "encoder.layers.1"), ids,
            pooling="mean"),
        Row("torch.nn", "two inputs: model(image, vector)", TwoInputModel, ("conv", "fuse"),
            image_and_vector(16, 5), note="a tuple of two tensors per set"),
    ]


def rows() -> list[Row]:
    """The matrix: every row the conformance test runs and the page lists, in the page's order."""
    return [*torchvision_rows(), *torchvision_extra_rows(), *timm_rows(), *transformers_rows(), *torch_rows()]


# -- the page ------------------------------------------------------------------------------------


def render(rows_: list[Row], left_out: list[str]) -> str:
    families: dict[str, int] = {}
    for r in rows_:
        families[r.family] = families.get(r.family, 0) + 1
    counts = ", ".join(f"{n} {f}" for f, n in families.items())
    lines = [
        "# Models that work",
        "",
        "<!-- Generated from tests/helpers/conformance.py: do not edit by hand. Regenerate with",
        "     python -m tests.helpers.conformance > docs/models.md -->",
        "",
        "Every row below is one TCAV test run by `tests/engine/test_conformance.py` (marked slow, so it runs in",
        "the full suite, not the quick loop): the model is built with random weights (nothing is downloaded),",
        f"and a concept set of {CONCEPT_SIZE} examples, {RANDOM_SETS} random sets of {RANDOM_SIZE} and {INPUTS} "
        "inputs, all small",
        "random tensors, are tested at the two layers listed. A row passes when the test gives a verdict for",
        "each layer; significance is not asserted (the data is random). The page is generated from the test's",
        "own list (`tests/helpers/conformance.py`), and a test checks that it matches, so it cannot drift:",
        "",
        "```bash",
        "python -m tests.helpers.conformance > docs/models.md",
        "```",
        "",
        f"{len(rows_)} rows: {counts}. The module took 207 s of CPU time on a 2-core machine (6.5 minutes",
        "of wall time there while other jobs shared it); run it alone with",
        "`python -m pytest tests/engine/test_conformance.py`, or one family with `-k timm`.",
        "",
        "Layers are named as in `model.named_modules()` (a selector such as `rnn[0]` names one tensor of a",
        "structured output); `pooling` and `layer_call` are the [models and inputs](models-and-inputs.md)",
        "options, and `pooling=\"mean\"` on a convolution's layer is the mean over its spatial positions.",
        "",
        "The torchvision classifiers (random weights, 10 classes, 64 px unless noted) are taken from",
        "`torchvision.models.list_models(module=torchvision.models)`. The large variants take 10 to 20 s each",
        "on two cores, so the matrix runs the smallest variant of each family and every classifier under",
        f"{TV_SMALL // 1_000_000} million parameters (the weights' metadata gives the counts; nothing is downloaded).",
    ]
    if left_out:
        lines += ["", "Left out, each with a smaller variant of its family in the table: "
                  + ", ".join(f"`{n}`" for n in left_out) + "."]
    lines += ["", "| family | model | layers | pooling | target | status | notes |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows_:
        layers = ", ".join(f"`{name}`" for name in r.layers)
        pooling = r.pooling + (f", layer_call={r.layer_call}" if r.layer_call is not None else "")
        status = "works" if r.xfail is None else f"expected to fail: {r.xfail}"
        lines.append(f"| {r.family} | `{r.model}` | {layers} | {pooling} | {r.shown_target} | {status} | {r.note} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render(rows(), torchvision_selection()[1]))

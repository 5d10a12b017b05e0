"""Small Hugging Face BERT classifiers from a config, and token data for them: no download, seconds to build.

The vocabulary is made up: id 0 pads, 1 and 2 are CLS and SEP, ``PLANTED``
are the words a trained model's positive class depends on, the rest are
ordinary words that occur equally in both classes.  Sentences are lists of
ids; :func:`encode` turns them into what a tokenizer gives (``input_ids``,
``attention_mask``), padded on the right to a chosen length.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

PAD, CLS, SEP = 0, 1, 2
PLANTED = (3, 4, 5)
ORDINARY = tuple(range(6, 64))
VOCAB = 64
MAX_LENGTH = 40


def bert(seed: int = 0, hidden: int = 32, layers: int = 2) -> nn.Module:
    """A BertForSequenceClassification with random weights (two classes)."""
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=MAX_LENGTH, num_labels=2,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, pad_token_id=PAD)
    torch.manual_seed(seed)
    return BertForSequenceClassification(config).eval()


def sentences(n: int, low: int, high: int, seed: int, words: tuple[int, ...] = ORDINARY) -> list[list[int]]:
    """``n`` sentences of ``low`` to ``high`` words drawn from ``words`` (seeded)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        size = int(torch.randint(low, high + 1, (1,), generator=gen))
        picks = torch.randint(0, len(words), (size,), generator=gen)
        out.append([words[int(k)] for k in picks])
    return out


def with_planted(sentences_: list[list[int]], seed: int) -> list[list[int]]:
    """Each sentence with one planted word put in place of a seeded position."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for s in sentences_:
        s = list(s)
        s[int(torch.randint(0, len(s), (1,), generator=gen))] = PLANTED[int(torch.randint(0, 3, (1,), generator=gen))]
        out.append(s)
    return out


def encode(sentences_: list[list[int]], length: int | None = None) -> dict[str, torch.Tensor]:
    """``[CLS] words [SEP]`` padded on the right to ``length`` (default: the longest), as a tokenizer gives."""
    rows = [[CLS, *s, SEP] for s in sentences_]
    width = max(len(r) for r in rows) if length is None else length
    assert all(len(r) <= width for r in rows)
    ids = torch.full((len(rows), width), PAD, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for k, r in enumerate(rows):
        ids[k, : len(r)] = torch.tensor(r)
        mask[k, : len(r)] = 1
    return {"input_ids": ids, "attention_mask": mask}


@functools.lru_cache(maxsize=2)
def trained_bert(seed: int = 0) -> nn.Module:
    """A small BERT trained so that class 1 means "a planted word occurs" (a ground truth to find)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # weights independent of the machine's thread count
    try:
        return _train(seed)
    finally:
        torch.set_num_threads(threads)


def _train(seed: int) -> nn.Module:
    model = bert(seed, hidden=16).train()
    plain = sentences(160, 3, 8, seed + 100)
    planted = with_planted(sentences(160, 3, 8, seed + 200), seed + 300)
    batch = encode(plain + planted)
    labels = torch.tensor([0] * len(plain) + [1] * len(planted))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(seed)
    for _epoch in range(5):
        order = torch.randperm(len(labels), generator=gen)
        for start in range(0, len(order), 32):
            idx = order[start:start + 32]
            out = model(input_ids=batch["input_ids"][idx], attention_mask=batch["attention_mask"][idx])
            loss = nn.functional.cross_entropy(out.logits, labels[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model

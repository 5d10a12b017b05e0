"""A tiny GPT-2 from a config and a word tokenizer that pads on either side: no download, milliseconds to build.

The vocabulary is a few made-up words (id 0 pads).  :class:`WordTokenizer`
returns what a Hugging Face tokenizer called with ``padding=True,
return_tensors="pt"`` returns, padded on the right or on the left
(``padding_side``), optionally to a fixed width and with the ``position_ids``
a GPT-2 needs under left padding (each real token's index among the real
tokens, as ``generate`` computes them).
"""

from __future__ import annotations

import torch
from torch import nn

WORDS = ("<pad>", "the", "a", "cat", "dog", "bird", "sat", "ran", "flew", "on", "to", "over", "mat", "park", "tree",
         "big", "small", "red", "blue", "green", "old", "new", "house", "river", "road")
VOCAB: dict[str, int] = {word: i for i, word in enumerate(WORDS)}
PAD = 0


class WordTokenizer:
    """Whitespace words -> ``input_ids`` and ``attention_mask`` (and ``position_ids``), padded on one side."""

    def __init__(self, padding_side: str = "right", *, position_ids: bool = False, width: int | None = None) -> None:
        assert padding_side in ("left", "right")
        self.padding_side, self.position_ids, self.width = padding_side, position_ids, width

    def __call__(self, texts: list[str]) -> dict[str, torch.Tensor]:
        rows = [[VOCAB[w] for w in text.split()] for text in texts]
        width = self.width or max(len(r) for r in rows)
        ids = torch.full((len(rows), width), PAD, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for k, row in enumerate(rows):
            where = slice(0, len(row)) if self.padding_side == "right" else slice(width - len(row), width)
            ids[k, where] = torch.tensor(row)
            mask[k, where] = 1
        batch = {"input_ids": ids, "attention_mask": mask}
        if self.position_ids:
            batch["position_ids"] = (mask.cumsum(1) - 1).clamp(min=0)
        return batch


def gpt2(seed: int = 0, layers: int = 2, hidden: int = 32) -> nn.Module:
    """A GPT2LMHeadModel with random weights (seeded), in eval mode."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(n_layer=layers, n_embd=hidden, n_head=2, vocab_size=len(WORDS), n_positions=32,
                        bos_token_id=PAD, eos_token_id=PAD, pad_token_id=PAD)
    torch.manual_seed(seed)
    return GPT2LMHeadModel(config).eval()


def phrases(n: int, low: int, high: int, seed: int) -> list[str]:
    """``n`` phrases of ``low`` to ``high`` words (seeded), from every word but the padding."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        size = int(torch.randint(low, high + 1, (1,), generator=gen))
        picks = torch.randint(1, len(WORDS), (size,), generator=gen)
        out.append(" ".join(WORDS[int(k)] for k in picks))
    return out


def llama(seed: int = 0, layers: int = 2, hidden: int = 32) -> nn.Module:
    """A LlamaForCausalLM with random weights (seeded), in eval mode: rotary positions, no absolute ones."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(WORDS), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=32, bos_token_id=PAD, eos_token_id=PAD, pad_token_id=PAD)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()

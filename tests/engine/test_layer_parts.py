"""A part of a layer's structured output, named by a selector, end to end through ``TCAV(...).test``.

Each model also passes the selected tensor through an ``nn.Identity`` tap, so the
tap (a plain tensor layer, as users had to build before selectors) is the
reference: the selected part and the tap must give the same numbers, for plain
gradients and for integrated gradients (which replace the part inside the
module's structured output).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pytest_tcav import ConceptDataError
from pytest_tcav.engine.tcav import TCAV


class LSTMClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(4, 8, batch_first=True)
        self.tap = nn.Identity()
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, (_h, _c) = self.rnn(x)
        return self.head(self.tap(out)[:, -1])


class GRUClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(4, 8, batch_first=True)
        self.tap = nn.Identity()
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _h = self.rnn(x)
        return self.head(self.tap(out).mean(1))


class AttentionClassifier(nn.Module):
    """``nn.MultiheadAttention`` called the usual way: ``a, _ = self.attn(q, k, v)`` (weights returned too)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.tap = nn.Identity()
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        a, _weights = self.attn(h, h, h)
        return self.head(self.tap(a)[:, -1])


def _sets(n_random: int = 4) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    concept = torch.rand(12, 6, 4, generator=gen)
    concept[..., 0] += 2.0  # a concept the sequences carry in their first feature
    inputs = torch.rand(10, 6, 4, generator=gen)
    return concept, inputs, [torch.rand(12, 6, 4, generator=gen) for _ in range(n_random)]


CASES = [
    (LSTMClassifier, "rnn[0]", "last"),
    (GRUClassifier, "rnn[0]", "mean"),
    (AttentionClassifier, "attn[0]", "last"),
]


@pytest.mark.slow  # trains CAVs for three models and two methods (about 2 s)
@pytest.mark.parametrize("method", ["gradient", "integrated_gradients"])
@pytest.mark.parametrize(("model_type", "layer", "pooling"), CASES)
def test_a_selected_part_gives_the_numbers_of_a_tap_on_the_same_tensor(model_type, layer, pooling, method):
    torch.manual_seed(0)
    model = model_type()
    concept, inputs, randoms = _sets()
    result = TCAV(model, pooling=pooling, method=method, n_steps=3).test(
        concept, target=1, inputs=inputs, layers=[layer, "tap"], random_sets=randoms)
    part, tap = result.layers
    assert part.layer == layer and tap.layer == "tap"
    assert part.verdict in ("significant", "not significant", "inconclusive")
    assert part.concept_scores == pytest.approx(tap.concept_scores)
    assert part.statistic == pytest.approx(tap.statistic, abs=1e-6)
    assert part.p_value == pytest.approx(tap.p_value, abs=1e-6)


@pytest.mark.slow  # a TCAV run
def test_attention_weights_are_a_part_too():
    torch.manual_seed(0)
    concept, inputs, randoms = _sets(3)
    result = TCAV(AttentionClassifier(), pooling="mean").test(
        concept, target=0, inputs=inputs, layers=["attn[1]", "attn[0]"], random_sets=randoms)
    assert [r.layer for r in result.layers] == ["attn[1]", "attn[0]"]


def test_an_rnn_state_puts_the_batch_second_and_is_refused_as_such():
    concept, inputs, randoms = _sets(3)
    with pytest.raises(ConceptDataError, match=r"layer 'rnn\[1\]\[0\]' gave an activation of shape \(1, \d+, 8\)"):
        TCAV(LSTMClassifier(), pooling="last").test(
            concept, target=1, inputs=inputs, layers=["rnn[1][0]"], random_sets=randoms)

"""How concept passes run: channels-last batches on the CPU, and the plain path when a model cannot take them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pytest_tcav.engine import activations
from pytest_tcav.engine.activations import concept_activations, target_gradients
from pytest_tcav.engine.layers import resolve_layers


class PoolNet(nn.Module):
    """Convolutions, batch norm, ReLU and max pooling: what image models are made of."""

    def __init__(self, view: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.head = nn.Linear(16 * 8 * 8, 3)
        self.view = view
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.1, 0.1)
            self.bn.running_var.uniform_(0.5, 1.5)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(self.pool(torch.relu(self.bn(self.conv1(x)))))
        # .view needs a contiguous feature map; flatten works on any layout.
        x = x.view(x.shape[0], -1) if self.view else torch.flatten(x, 1)
        return self.head(x)


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(10, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def plain(model: nn.Module, layers: list[str], images: torch.Tensor, monkeypatch: pytest.MonkeyPatch):
    with monkeypatch.context() as patch:
        patch.setattr(activations, "CHANNELS_LAST_ON_CPU", False)
        return concept_activations(model, resolve_layers(model, layers), images, batch_size=4)


def test_channels_last_passes_give_the_plain_activations(images: torch.Tensor,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    model = PoolNet()
    layers = ["conv1", "pool", "conv2"]
    used = []
    original = activations._as_channels_last
    monkeypatch.setattr(activations, "_as_channels_last", lambda batch: used.append(1) or original(batch))
    fast = concept_activations(model, resolve_layers(model, layers), images, batch_size=4)
    assert len(used) == 3  # every batch went channels-last
    expected = plain(model, layers, images, monkeypatch)
    for name in layers:
        assert fast[name].is_contiguous() and fast[name].shape == expected[name].shape
        torch.testing.assert_close(fast[name], expected[name], rtol=1e-5, atol=1e-6)
    assert not model.training and all(p.is_contiguous() for p in model.parameters())  # model untouched


def test_a_model_that_needs_contiguous_maps_falls_back_to_the_plain_path(images: torch.Tensor,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    model = PoolNet(view=True)
    with pytest.raises(RuntimeError, match="view"):  # what the channels-last attempt meets
        with torch.no_grad():
            model(images.contiguous(memory_format=torch.channels_last))
    layers = ["conv1", "head"]
    got = concept_activations(model, resolve_layers(model, layers), images, batch_size=4)
    expected = plain(model, layers, images, monkeypatch)
    assert all(torch.equal(got[name], expected[name]) for name in layers)  # the plain path, bit for bit
    assert model in activations._CHANNELS_LAST_FAILS  # and no second attempt for this model
    calls = []
    original = activations._as_channels_last
    monkeypatch.setattr(activations, "_as_channels_last", lambda batch: calls.append(1) or original(batch))
    concept_activations(model, resolve_layers(model, layers), images, batch_size=4)
    assert calls == []


def test_errors_of_the_model_itself_still_surface(images: torch.Tensor) -> None:
    model = PoolNet()
    with pytest.raises(RuntimeError):
        concept_activations(model, resolve_layers(model, ["conv1"]), images[:, :2])  # 2 channels, not 3
    # Bad input is not a layout problem: the model keeps the fast path, so later values never
    # depend on which failing checks ran before them.
    assert model not in activations._CHANNELS_LAST_FAILS


def test_a_users_layer_error_does_not_change_the_path(images: torch.Tensor) -> None:
    from pytest_tcav.errors import LayerError

    model = PoolNet()
    # the same module reached twice in one pass would make its activation ambiguous
    model.forward = lambda x: model.conv2(model.pool(model.pool(model.conv1(x))))  # type: ignore[method-assign]
    with pytest.raises(LayerError, match="ran twice"):
        concept_activations(model, resolve_layers(model, ["pool", "conv2"]), images)
    assert model not in activations._CHANNELS_LAST_FAILS


def test_gradients_keep_the_plain_layout(images: torch.Tensor, monkeypatch: pytest.MonkeyPatch) -> None:
    """Max pooling breaks ties by memory order, so a channels-last backward could route gradients elsewhere."""
    calls = []
    monkeypatch.setattr(activations, "_as_channels_last", lambda batch: calls.append(1) or batch)
    model = PoolNet()
    target_gradients(model, resolve_layers(model, ["conv1", "conv2"]), images, 1)
    assert calls == []

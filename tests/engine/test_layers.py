"""Layer names and hooks: helpful errors, input or output activations, nothing left on the model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pytest_tcav import ConfigurationError, LayerError
from pytest_tcav.engine.layers import StopForward, capture, check_all_reached, resolve_layers


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.unused = nn.Linear(2, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.block(self.features(x))).flatten(1))


def test_layers_are_named_as_in_named_modules():
    net = Net()
    modules = resolve_layers(net, ["features", "block.0", "head"])
    assert modules["block.0"] is net.block[0] and modules["head"] is net.head
    assert resolve_layers(net, "block")["block"] is net.block  # a single name is accepted


def test_unknown_layer_lists_the_closest_names():
    with pytest.raises(LayerError) as info:
        resolve_layers(Net(), ["blok"])
    message = str(info.value)
    assert "has no layer 'blok'" in message and "Did you mean" in message and "'block'" in message


def test_unknown_layer_without_close_names_lists_known_layers():
    with pytest.raises(LayerError, match="Known layers include: 'features'"):
        resolve_layers(Net(), ["zzzzzzzz"])


@pytest.mark.parametrize("names", [[], ["head", "head"]])
def test_layer_lists_must_be_nonempty_and_distinct(names):
    with pytest.raises(ConfigurationError):
        resolve_layers(Net(), names)


def test_the_model_itself_is_not_a_layer_name():
    with pytest.raises(LayerError):
        resolve_layers(Net(), [""])


def test_point_must_be_input_or_output():
    with pytest.raises(ConfigurationError, match="layer point"):
        resolve_layers(Net(), ["head"], point="middle")  # type: ignore[arg-type]


def test_input_point_is_the_previous_layers_output():
    net = Net().eval()
    x = torch.rand(2, 3, 8, 8)
    with capture(resolve_layers(net, ["features"]), "output") as out, torch.no_grad():
        net(x)
    with capture(resolve_layers(net, ["block"]), "input") as inp, torch.no_grad():
        net(x)
    assert torch.equal(out["features"], inp["block"])


def test_hooks_are_removed_also_after_an_exception():
    net = Net()
    modules = resolve_layers(net, ["features", "block"])
    with pytest.raises(RuntimeError):
        with capture(modules, "output"):
            raise RuntimeError("boom")
    with pytest.raises(StopForward):
        with capture(modules, "input", stop_when_done=True):
            net(torch.rand(1, 3, 8, 8))
    for module in net.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks


def test_a_layer_forward_never_calls_is_reported():
    net = Net()
    modules = resolve_layers(net, ["unused", "head"])
    with capture(modules, "output") as seen, torch.no_grad():
        net(torch.rand(1, 3, 8, 8))
    with pytest.raises(LayerError, match="never reached"):
        check_all_reached(modules, seen)


def test_a_layer_called_twice_is_rejected():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.shared = nn.Linear(3, 3)

        def forward(self, x):
            return self.shared(self.shared(x))

    net = Twice()
    with pytest.raises(LayerError, match="ran twice"):
        with capture(resolve_layers(net, ["shared"]), "output"):
            net(torch.rand(2, 3))


class SharedReLU(nn.Module):
    """One ReLU module called twice per forward pass, as in torchvision's ResNet blocks."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b, self.head = nn.Linear(3, 4), nn.Linear(4, 4), nn.Linear(4, 2)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.head(self.relu(self.b(self.relu(self.a(x)))))


@pytest.mark.parametrize("call", [0, 1])
def test_layer_call_picks_one_call_of_a_module_run_twice(call: int) -> None:
    net, x = SharedReLU(), torch.rand(5, 3)
    modules = resolve_layers(net, ["relu"])
    with capture(modules, "output", call=call) as seen, torch.no_grad():
        net(x)
    check_all_reached(modules, seen)
    first = torch.relu(net.a(x))
    expected = first if call == 0 else torch.relu(net.b(first))
    assert torch.equal(seen["relu"], expected.detach())
    assert seen.calls == {"relu": 2}


def test_layer_call_replaces_only_the_call_it_names() -> None:
    net, x = SharedReLU(), torch.rand(5, 3)
    modules = resolve_layers(net, ["relu"])
    with capture(modules, "output", call=0, replace=lambda _name, value: torch.zeros_like(value)), torch.no_grad():
        out = net(x)
    # the first call's output zeroed, the second call (on b's output) untouched
    assert torch.equal(out, net.head(torch.relu(net.b(torch.zeros(5, 4)))))


def test_layer_call_beyond_the_calls_says_how_many_ran() -> None:
    net = SharedReLU()
    modules = resolve_layers(net, ["relu"])
    with capture(modules, "output", call=2) as seen, torch.no_grad():
        net(torch.rand(5, 3))
    with pytest.raises(LayerError, match=r"'relu' 2 time\(s\) ran; layer_call counts from 0"):
        check_all_reached(modules, seen)


def test_a_module_run_twice_without_layer_call_names_the_knob() -> None:
    net = SharedReLU()
    with pytest.raises(LayerError, match="layer_call=N"):
        with capture(resolve_layers(net, ["relu"]), "output"), torch.no_grad():
            net(torch.rand(2, 3))


def test_a_layer_whose_output_is_not_a_tensor_is_rejected():
    class Pair(nn.Module):
        def forward(self, x):
            return x, x

    class Net2(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pair = Pair()

        def forward(self, x):
            a, b = self.pair(x)
            return a + b

    net = Net2()
    with pytest.raises(LayerError, match="not a tensor"):
        with capture(resolve_layers(net, ["pair"]), "output"):
            net(torch.rand(2, 3))

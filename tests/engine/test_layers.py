"""Layer names and hooks: helpful errors, input or output activations, nothing left on the model."""

from __future__ import annotations

import collections

import pytest
import torch
from torch import nn

from pytest_tcav import ConfigurationError, LayerError
from pytest_tcav.engine import layer_parts
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


# -- a part of a structured output, named by a selector ("rnn[0]", "rnn[1][0]", "encoder['hidden']") -----------


class Recurrent(nn.Module):
    """An LSTM (``(output, (h, c))``), attention called with its weights (``(output, weights)``), a head."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(4, 6, batch_first=True)
        self.attn = nn.MultiheadAttention(6, 2, batch_first=True)
        self.head = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _state = self.rnn(x)
        a, _weights = self.attn(out, out, out)
        return self.head(a[:, -1])


def _run(net: nn.Module, names: list[str], x: torch.Tensor, **kwargs) -> dict[str, torch.Tensor]:
    with capture(resolve_layers(net, names), "output", **kwargs) as seen, torch.no_grad():
        net(x)
    return dict(seen)


@pytest.mark.parametrize(("name", "expected"), [
    ("rnn", ("rnn", ())), ("rnn[0]", ("rnn", (0,))), ("rnn[1][0]", ("rnn", (1, 0))), ("rnn[-1]", ("rnn", (-1,))),
    ("encoder['last_hidden_state']", ("encoder", ("last_hidden_state",))),
    ('encoder["a b"][2]', ("encoder", ("a b", 2))), ("blocks.0.attn[0]", ("blocks.0.attn", (0,))),
])
def test_a_layer_name_is_a_module_name_and_a_selector(name, expected):
    assert layer_parts.split_layer_name(name) == expected


@pytest.mark.parametrize("name", ["rnn[0", "rnn[a]", "rnn[0]x", "rnn[ 0]", "rnn['a\"]", "rnn[]"])
def test_a_malformed_selector_says_how_to_write_one(name):
    with pytest.raises(LayerError, match=r"malformed selector.*an index \[0\] or a key \['name'\]"):
        resolve_layers(Recurrent(), [name])


def test_selectors_pick_the_parts_of_an_lstm_and_of_attention_with_weights():
    net, x = Recurrent(), torch.rand(3, 5, 4)
    seen = _run(net, ["rnn[0]", "rnn[1][0]", "rnn[1][1]", "attn[0]", "attn[1]", "rnn[-2]"], x)
    out, (h, c) = net.rnn(x)
    assert torch.equal(seen["rnn[0]"], out) and torch.equal(seen["rnn[-2]"], out)
    assert torch.equal(seen["rnn[1][0]"], h) and torch.equal(seen["rnn[1][1]"], c)
    assert seen["attn[0]"].shape == (3, 5, 6) and seen["attn[1]"].shape == (3, 5, 5)
    assert resolve_layers(net, ["rnn[0]"])["rnn[0]"] is net.rnn


def test_a_structured_output_without_selector_lists_its_parts_with_shapes():
    with pytest.raises(LayerError) as info:
        _run(Recurrent(), ["rnn"], torch.rand(3, 5, 4))
    message = str(info.value)
    assert message.startswith("layer 'rnn' output is a tuple of (Tensor, tuple), not a tensor")
    assert "rnn[0]: (3, 5, 6), rnn[1][0]: (1, 3, 6), rnn[1][1]: (1, 3, 6)" in message
    assert "need_weights" not in message  # an LSTM is no attention module


def test_only_attention_modules_get_the_need_weights_hint():
    with pytest.raises(LayerError, match=r"attn\[0\]: \(3, 5, 6\), attn\[1\]: \(3, 5, 5\) \(attention weights .*"
                                         r"need_weights=False\)"):
        _run(Recurrent(), ["attn"], torch.rand(3, 5, 4))

    class SelfAttention(nn.Module):  # a user's module whose class name says attention
        def forward(self, x):
            return x, x.softmax(-1)

    class Net3(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = SelfAttention()

        def forward(self, x):
            return self.block(x)[0]

    with pytest.raises(LayerError, match="need_weights=False"):
        _run(Net3(), ["block"], torch.rand(3, 4))


@pytest.mark.parametrize(("name", "message"), [
    ("rnn[2]", r"layer 'rnn\[2\]': the output of 'rnn' is a tuple of \(Tensor, tuple\) and has no part \[2\]; "
               r"the parts of the output of 'rnn' are: rnn\[0\]: \(3, 5, 6\), rnn\[1\]\[0\]"),
    ("rnn['out']", r"has no part \['out'\]; the parts .* rnn\[0\]"),
    ("rnn[0][1]", r"'rnn\[0\]' is a tensor of shape \(3, 5, 6\), which has no parts to select; name it 'rnn\[0\]'"),
    ("head[0]", r"the output of 'head' is a tensor of shape \(3, 2\), which has no parts to select; name it 'head'"),
    ("rnn[1]", r"layer 'rnn\[1\]' is a tuple of \(Tensor, Tensor\), not a tensor.*rnn\[1\]\[0\]: \(1, 3, 6\), "
               r"rnn\[1\]\[1\]: \(1, 3, 6\)$"),
])
def test_a_selector_that_matches_nothing_names_the_parts_that_exist(name, message):
    with pytest.raises(LayerError, match=message):
        _run(Recurrent(), [name], torch.rand(3, 5, 4))


def test_an_unknown_module_with_a_selector_suggests_close_module_names_with_it():
    with pytest.raises(LayerError, match=r"has no layer 'rnnn\[1\]\[0\]'. Did you mean 'rnn\[1\]\[0\]'\?"):
        resolve_layers(Recurrent(), ["rnnn[1][0]"])
    with pytest.raises(LayerError, match=r"has no layer '\[0\]'"):  # the model itself is still no layer
        resolve_layers(Recurrent(), ["[0]"])


def test_a_selector_of_a_layer_input_is_refused():
    with pytest.raises(ConfigurationError, match=r"'rnn\[0\]' selects a part of its module's output, but "
                                                 r"layer_point='input'"):
        resolve_layers(Recurrent(), ["head", "rnn[0]"], point="input")
    with pytest.raises(ConfigurationError, match="layer_point='input'"):
        with capture({"rnn[0]": nn.Identity()}, "input"):
            pass


def test_a_one_tensor_tuple_needs_no_selector_and_takes_one():
    class Quiet(nn.Module):
        def forward(self, x):
            return None, (x * 2, None)

    class Net4(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.quiet = Quiet()

        def forward(self, x):
            return self.quiet(x)[1][0]

    x = torch.rand(2, 3)
    seen = _run(Net4(), ["quiet[1]", "quiet[1][0]"], x)  # the rule of one tensor and Nones applies to the part
    assert torch.equal(seen["quiet[1]"], 2 * x) and torch.equal(seen["quiet[1][0]"], 2 * x)
    attention = nn.MultiheadAttention(4, 1, batch_first=True)

    class Quiet2(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = attention

        def forward(self, x):
            return self.attn(x, x, x, need_weights=False)[0]

    y = torch.rand(2, 3, 4)
    seen = _run(Quiet2(), ["attn", "attn[0]"], y)
    assert torch.equal(seen["attn"], seen["attn[0]"])


class Keyed(nn.Module):
    """A block returning a dict, a named tuple inside it, and a mapping subclass."""

    Pair = collections.namedtuple("Pair", "first second")

    def forward(self, x):
        return {"hidden": x + 1, "pair": self.Pair(x * 2, x * 3), 5: x * 4}


class KeyedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = Keyed()

    def forward(self, x):
        out = self.block(x)
        return out["hidden"] + out["pair"].second + out[5]


def test_keys_select_in_mappings_and_indexes_in_named_tuples():
    x = torch.rand(2, 3)
    seen = _run(KeyedNet(), ["block['hidden']", 'block["pair"][1]', "block[5]"], x)
    assert torch.equal(seen["block['hidden']"], x + 1) and torch.equal(seen['block["pair"][1]'], x * 3)
    assert torch.equal(seen["block[5]"], x * 4)
    with pytest.raises(LayerError, match=r"block\['hidden'\]: \(2, 3\), block\['pair'\]\[0\]: \(2, 3\), "
                                         r"block\['pair'\]\[1\]: \(2, 3\), block\[5\]: \(2, 3\)"):
        _run(KeyedNet(), ["block"], x)


def test_a_replaced_part_comes_back_in_the_same_structure():
    x = torch.rand(2, 3)
    net = KeyedNet()
    with capture(resolve_layers(net, ['block["pair"][1]']), "output", replace=lambda _n, v: torch.zeros_like(v)):
        y = net(x)
    assert torch.allclose(y, (x + 1) + 4 * x)  # the pair's second part replaced by zeros, the rest as it was
    pair = Keyed.Pair(x, x)
    out = layer_parts.replaced({"a": [x, (x, pair)], "b": x}, ("a", 1, 1, 0), torch.zeros(1))
    assert type(out["a"]) is list and type(out["a"][1]) is tuple and type(out["a"][1][1]) is Keyed.Pair
    assert out["a"][1][1].first.shape == (1,) and out["a"][1][1].second is x and out["b"] is x
    ordered = collections.OrderedDict(h=x)
    assert type(layer_parts.replaced(ordered, ("h",), x * 0)) is collections.OrderedDict
    assert ordered["h"] is x  # a copy: the module's own output is not changed in place
    top = torch.rand(3, 4).max(1)
    assert type(layer_parts.replaced(top, (0,), torch.zeros(3))) is type(top)


@pytest.mark.slow  # loads transformers
def test_model_output_fields_are_keys_and_come_back_as_a_model_output():
    from transformers.modeling_outputs import BaseModelOutput

    x = torch.rand(2, 3)

    class Encoder(nn.Module):
        def forward(self, x):
            return BaseModelOutput(last_hidden_state=x + 1, hidden_states=(x, x + 1))

    class Net5(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = Encoder()

        def forward(self, x):
            out = self.encoder(x)
            return out.last_hidden_state * out.hidden_states[0]

    net = Net5()
    seen = _run(net, ["encoder['last_hidden_state']", 'encoder["hidden_states"][0]'], x)
    assert torch.equal(seen["encoder['last_hidden_state']"], x + 1)
    with capture(resolve_layers(net, ["encoder['last_hidden_state']"]), "output",
                 replace=lambda _n, v: torch.ones_like(v)):
        assert torch.equal(net(x), x)  # read back as an attribute: the replacement is a ModelOutput too
    with pytest.raises(LayerError, match=r"encoder\['last_hidden_state'\]: \(2, 3\), "
                                         r"encoder\['hidden_states'\]\[0\]: \(2, 3\)"):
        _run(net, ["encoder"], x)

"""Running the model: as few passes as TCAV needs, exact gradients, and the model left as found."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from pytest_tcav import TCAV, NonFiniteError, TargetError
from pytest_tcav.engine.activations import concept_activations, gauss_legendre, target_gradients
from pytest_tcav.engine.layers import resolve_layers


class Counting(nn.Module):
    """A small CNN that counts its forward passes, and whose head counts backward passes."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh())
        self.b = nn.Sequential(nn.Conv2d(4, 5, 3, padding=1), nn.Tanh())
        self.c = nn.Sequential(nn.Conv2d(5, 6, 3, padding=1), nn.Tanh())
        self.tail = nn.Sequential(nn.Conv2d(6, 6, 1), nn.Tanh())
        self.head = nn.Linear(6, classes)
        self.forwards = 0
        self.tail_calls = 0
        self.backwards = 0
        self.tail.register_forward_hook(self._count_tail)
        self.head.register_full_backward_hook(self._count_backward)

    def _count_tail(self, *_):
        self.tail_calls += 1

    def _count_backward(self, *_):
        self.backwards += 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forwards += 1
        h = self.tail(self.c(self.b(self.a(x))))
        return self.head(h.mean((2, 3)))


@pytest.fixture
def net() -> Counting:
    torch.manual_seed(0)
    return Counting().eval()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(10, 3, 6, 6, generator=torch.Generator().manual_seed(1))


def _autograd_layer_gradient(model: nn.Module, layer: nn.Module, x: torch.Tensor, target) -> torch.Tensor:
    """The reference: the gradient at one layer, by retaining that layer's output alone."""
    kept = {}
    handle = layer.register_forward_hook(lambda _m, _i, out: kept.__setitem__("out", out))
    try:
        out = model(x)
    finally:
        handle.remove()
    value = target(out) if callable(target) else out[:, target]
    (grad,) = torch.autograd.grad(value.sum(), [kept["out"]])
    return grad.reshape(len(x), -1)


# -- passes ------------------------------------------------------------------------------------


def test_one_forward_per_batch_for_all_layers(net, images):
    modules = resolve_layers(net, ["a", "b", "c"])
    acts = concept_activations(net, modules, images, batch_size=4)
    assert net.forwards == 3  # ceil(10 / 4), whatever the number of layers
    assert {name: tuple(a.shape) for name, a in acts.items()} == {
        "a": (10, 4 * 36), "b": (10, 5 * 36), "c": (10, 6 * 36)
    }


def test_concept_pass_stops_after_the_deepest_layer(net, images):
    concept_activations(net, resolve_layers(net, ["a", "b"]), images, batch_size=5)
    assert net.tail_calls == 0 and net.forwards == 2


def test_one_forward_and_one_backward_per_batch_for_all_layers(net, images):
    modules = resolve_layers(net, ["a", "b", "c"])
    target_gradients(net, modules, images, 1, batch_size=4)
    assert net.forwards == 3 and net.backwards == 3


def test_activations_equal_a_plain_forward(net, images):
    acts = concept_activations(net, resolve_layers(net, ["b"]), images, batch_size=3)
    with torch.no_grad():
        expected = net.b(net.a(images)).reshape(10, -1)
    assert torch.allclose(acts["b"], expected, atol=1e-6)


# -- gradients ------------------------------------------------------------------------------------


@pytest.mark.slow  # over a second
def test_gradients_equal_autograd_at_each_layer(net, images):
    modules = resolve_layers(net, ["a", "b", "c"])
    grads = target_gradients(net, modules, images, 2, batch_size=4)
    for name, module in modules.items():
        expected = _autograd_layer_gradient(net, module, images, 2)
        assert torch.allclose(grads[name], expected, rtol=1e-5, atol=1e-7), name


def test_gradients_at_layer_inputs(net, images):
    grads = target_gradients(net, resolve_layers(net, ["c"], "input"), images, 0, point="input")
    expected = _autograd_layer_gradient(net, net.b, images, 0)  # c's input is b's output
    assert torch.allclose(grads["c"], expected, rtol=1e-5, atol=1e-7)


@pytest.mark.slow  # over a second
def test_callable_target(net, images):
    def margin(out: torch.Tensor) -> torch.Tensor:
        return out[:, 1] - out[:, 0]

    modules = resolve_layers(net, ["b"])
    grads = target_gradients(net, modules, images, margin)["b"]
    by_class = [target_gradients(net, modules, images, k)["b"] for k in (0, 1)]
    assert torch.allclose(grads, by_class[1] - by_class[0], atol=1e-6)
    assert torch.allclose(grads, _autograd_layer_gradient(net, net.b, images, margin), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (3, "target 3 is out of range for a model with 3 outputs \\(valid: 0..2\\)"),
        (-1, "out of range"),
        (True, "class index or a callable"),
        ("cat", "class index or a callable"),
        (lambda out: out, "one scalar per example"),
    ],
)
def test_bad_targets(net, images, target, message):
    with pytest.raises(TargetError, match=message):
        target_gradients(net, resolve_layers(net, ["b"]), images, target)


def test_integrated_gradients_are_exact_for_a_quadratic_head():
    """Downstream f(h) = sum(h^2): the path integral of 2h from baseline b to a is a + b,
    and Gauss-Legendre with 2 or more points integrates this linear path exactly."""

    class Square(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Linear(4, 4)

        def forward(self, x):
            return (self.layer(x) ** 2).sum(1, keepdim=True)

    torch.manual_seed(0)
    model = Square().eval()
    x = torch.rand(7, 4)
    modules = resolve_layers(model, ["layer"])
    with torch.no_grad():
        activation = model.layer(x)
        baseline = model.layer(torch.zeros(1, 4))
    for n_steps in (2, 5):
        ig = target_gradients(model, modules, x, 0, method="integrated_gradients", n_steps=n_steps,
                              batch_size=n_steps * 3)  # 3 inputs per batch: 3 batches
        assert torch.allclose(ig["layer"], activation + baseline, atol=1e-5)


def test_integrated_gradients_equal_the_gradient_for_a_linear_head(net, images):
    class Linearised(nn.Module):
        def __init__(self, inner: Counting) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner.head(self.inner.c(self.inner.b(self.inner.a(x))).mean((2, 3)))

    model = Linearised(net).eval()
    modules = resolve_layers(model, ["inner.c"])  # after c: mean and linear head only
    plain = target_gradients(model, modules, images, 1)
    ig = target_gradients(model, modules, images, 1, method="integrated_gradients", n_steps=4)
    assert torch.allclose(plain["inner.c"], ig["inner.c"], atol=1e-7)


def test_gauss_legendre_points_and_weights():
    alphas, weights = gauss_legendre(5)
    assert np.all((alphas > 0) & (alphas < 1)) and weights.sum() == pytest.approx(1.0)
    assert float(np.sum(weights * alphas**7)) == pytest.approx(1 / 8)  # exact up to degree 2n - 1


def test_non_finite_activations_are_reported(net, images):
    bad = images.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="layer 'a'"):
        concept_activations(net, resolve_layers(net, ["a"]), bad)


# -- the model is left as found ------------------------------------------------------------------


def _state(model: nn.Module):
    return (
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()],
        [p.grad for p in model.parameters()],
    )


@pytest.mark.parametrize("method", ["gradient", "integrated_gradients"])
def test_model_state_is_restored(net, images, method):
    net.train()
    net.b.eval()  # a mixed state must come back as it was, not as all-train
    net.a[0].weight.requires_grad_(False)
    before = _state(net)
    modules = resolve_layers(net, ["a", "c"])
    concept_activations(net, modules, images)
    target_gradients(net, modules, images, 1, method=method)
    assert _state(net) == before


def test_model_state_is_restored_after_an_exception(net, images):
    net.train()
    before = _state(net)

    def failing(out):
        raise RuntimeError("target failed")

    with pytest.raises(RuntimeError, match="target failed"):
        target_gradients(net, resolve_layers(net, ["a", "b"]), images, failing)
    with pytest.raises(RuntimeError, match="target failed"):
        TCAV(net).test(images, target=failing, inputs=images, layers=["a"],
                       random_sets=[torch.rand(10, 3, 6, 6) for _ in range(3)])
    assert _state(net) == before


def test_model_is_evaluated_in_eval_mode(images):
    class Probe(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Linear(3 * 36, 2)
            self.modes: list[bool] = []

        def forward(self, x):
            self.modes.append(self.training)
            return self.layer(x.flatten(1))

    probe = Probe().train()
    target_gradients(probe, resolve_layers(probe, ["layer"]), images, 0)
    concept_activations(probe, resolve_layers(probe, ["layer"]), images)
    assert probe.modes == [False, False] and probe.training


@pytest.mark.slow  # over a second
def test_global_random_state_is_untouched(net, images):
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    torch_state = torch.get_rng_state()
    numpy_state = np.random.get_state()
    python_state = random.getstate()
    pool = torch.rand(60, 3, 6, 6, generator=torch.Generator().manual_seed(2))
    for trainer in (None, "sklearn_sgd", "logistic"):
        TCAV(net, trainer=trainer).test(images, target=1, inputs=images, layers=["a", "b"],
                                        random_sets=3, random_pool=pool)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.random.get_state()[1].tolist() == numpy_state[1].tolist()
    assert random.getstate() == python_state


def test_the_quick_finiteness_check_is_never_wrong():
    """A finite sum proves every value finite; one that overflows only sends the check to the exact test."""
    from pytest_tcav.engine.activations import _check_finite, all_finite
    from pytest_tcav.errors import NonFiniteError

    assert all_finite(torch.rand(3, 5)) and all_finite(torch.arange(4)) and all_finite(torch.empty(0, 3))
    huge = torch.full((2, 4), 3e38)  # finite values whose sum overflows
    assert not all_finite(huge)
    _check_finite("activations", "layer", huge)  # the exact check finds them finite
    for bad in (float("nan"), float("inf"), -float("inf")):
        values = torch.rand(3, 5)
        values[1, 2] = bad
        assert not all_finite(values)
        with pytest.raises(NonFiniteError, match=r"example\(s\) 1 of 3"):
            _check_finite("activations", "layer", values)

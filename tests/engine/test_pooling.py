"""Pooling over the spatial axes of convolution layers, and the token pooling left as it was.

A convolution's activation ``(batch, channels, *spatial)`` under ``pooling="mean"``
is one ``channels``-wide vector per example; its gradient is the derivative of
the target when every spatial position moves along the CAV (docs/statistics.md),
checked here against a finite difference.  A hand-wired detector of a small
pattern anywhere in the image is the ground truth: the pattern, placed at random
positions, is significant under ``"mean"``; a set drawn like the random sets is not.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from pytest_tcav import TCAV
from pytest_tcav.engine import work_units
from pytest_tcav.engine.activations import concept_activations, target_gradients
from pytest_tcav.engine.examples import as_concept
from pytest_tcav.engine.pooling import pool, pool_gradient
from pytest_tcav.errors import LayerError
from pytest_tcav.storage.memory import MemoryStore


class _ConvNet(nn.Module):
    """Smooth (tanh) layers, so a central difference converges to the gradient."""

    def __init__(self, dims: int) -> None:
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        self.stem = nn.Sequential(conv(3, 4, 3, padding=1), nn.Tanh())
        self.block = conv(4, 5, 3, padding=1)
        self.after = nn.Sequential(nn.Tanh(), conv(5, 6, 3, stride=2), nn.Tanh(), nn.Flatten())
        self.head = nn.LazyLinear(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.after(self.block(self.stem(x))))


def _model(dims: int) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(dims)
    gen = torch.Generator().manual_seed(10 + dims)
    shape = (5, 3, 9, 8) if dims == 2 else (5, 3, 6, 5, 7)
    x = torch.rand(shape, generator=gen, dtype=torch.float64)
    model = _ConvNet(dims).double()
    model(x)  # LazyLinear takes its width
    return model.eval(), x


def _target_moved(model: nn.Module, x: torch.Tensor, move: torch.Tensor) -> torch.Tensor:
    """Class 1's logit when every spatial position of ``block`` moves by ``move`` (a channels-wide vector)."""
    def shift(_module: nn.Module, _args: Any, out: torch.Tensor) -> torch.Tensor:
        return out + move.view(1, -1, *([1] * (out.dim() - 2)))

    handle = model.block.register_forward_hook(shift)
    try:
        with torch.no_grad():
            return model(x)[:, 1]
    finally:
        handle.remove()


@pytest.mark.parametrize("dims", [2, 3])
def test_the_pooled_gradient_is_the_derivative_when_every_position_moves_along_the_cav(dims):
    model, x = _model(dims)
    modules = {"block": model.block}
    grads = target_gradients(model, modules, x, 1, pooling="mean")["block"]
    assert grads.shape == (len(x), 5)
    v = torch.randn(5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    eps = 1e-5
    difference = (_target_moved(model, x, eps * v) - _target_moved(model, x, -eps * v)) / (2 * eps)
    assert difference.abs().min() > 1e-3  # a derivative worth comparing
    # float64 throughout; the pooled gradient is returned in float32 (what the CAVs see), hence the tolerance
    torch.testing.assert_close(grads.double() @ v, difference, rtol=1e-5, atol=1e-7)
    # the mean over every position, which the CAV sees, moves by exactly eps * v: the derivative is with respect to it
    acts = concept_activations(model, modules, x, pooling="mean")["block"]
    spatial = tuple(range(2, 2 + dims))
    with torch.no_grad():
        before = model.block(model.stem(x))
    after = before + eps * v.view(1, -1, *([1] * dims))
    torch.testing.assert_close(acts, before.mean(spatial).float())
    torch.testing.assert_close(after.mean(spatial) - before.mean(spatial), (eps * v).expand(len(x), 5),
                               rtol=1e-6, atol=0.0)


def test_integrated_gradients_pool_as_the_flattened_ones_sum():
    model, x = _model(2)
    modules = {"block": model.block}
    pooled = target_gradients(model, modules, x, 1, method="integrated_gradients", n_steps=3, pooling="mean")
    flat = target_gradients(model, modules, x, 1, method="integrated_gradients", n_steps=3)
    torch.testing.assert_close(pooled["block"], flat["block"].view(len(x), 5, -1).sum(-1), rtol=1e-5, atol=1e-7)


def test_the_cav_sees_one_value_per_channel():
    for dims in (2, 3):
        model, x = _model(dims)
        model, x = model.float(), x.float()
        acts = concept_activations(model, {"block": model.block}, x, pooling="mean")["block"]
        assert acts.shape == (len(x), 5)  # the channel count, whatever the spatial size
        with torch.no_grad():
            full = model.block(model.stem(x))
        torch.testing.assert_close(acts, full.mean(tuple(range(2, full.dim()))))


def test_first_and_last_are_refused_for_feature_maps_and_name_mean():
    model, x = _model(2)
    for pooling in ("first", "last"):
        with pytest.raises(LayerError, match=r"shape \(5, 5, 9, 8\), read as \(batch, channels, \*spatial\); "
                                             rf"pooling='{pooling}' picks a token.*pooling='mean'"):
            concept_activations(model, {"block": model.block}, x, pooling=pooling)


def test_a_1d_convolution_is_refused_under_a_pooling_not_read_as_tokens():
    model = nn.Sequential(nn.Conv1d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 2))
    x = torch.rand(6, 3, 10)
    for pooling in ("mean", "first", "last"):
        with pytest.raises(LayerError, match=r"layer '0' is a Conv1d: its activations are \(batch, channels, "
                                             r"length\).*read as tokens.*pooling='flatten'"):
            concept_activations(model, {"0": model[0]}, x, pooling=pooling)
        with pytest.raises(LayerError, match="is a Conv1d"):
            target_gradients(model, {"0": model[0]}, x, 1, pooling=pooling)
    assert concept_activations(model, {"0": model[0]}, x)["0"].shape == (6, 32)  # flatten: as before


def test_token_and_vector_layers_pool_as_before():
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randn(4, 7, 6, generator=gen)
    mask = torch.ones(4, 7, dtype=torch.long)
    mask[1, 5:] = 0
    mask[2, 3:] = 0
    real = mask.bool().unsqueeze(-1).float()
    assert torch.equal(pool("t", tokens, "mean", mask), (tokens * real).sum(1) / real.sum(1))
    assert torch.equal(pool_gradient("t", tokens, "mean", mask), (tokens * real).sum(1))
    assert torch.equal(pool("t", tokens, "mean", None), tokens.mean(1))
    assert torch.equal(pool("t", tokens, "last", mask), tokens[torch.arange(4), torch.tensor([6, 4, 2, 6])])
    assert torch.equal(pool("t", tokens, "first", mask), tokens[:, 0])
    vectors = torch.randn(4, 6, generator=gen)
    for pooling in ("flatten", "mean", "first", "last"):
        assert torch.equal(pool("v", vectors, pooling, None), vectors)
    maps = torch.randn(4, 3, 5, 5, generator=gen)
    assert torch.equal(pool("c", maps, "flatten", None), maps.reshape(4, -1))
    # an attention_mask counts tokens, not the positions of a feature map: every position is averaged
    assert torch.equal(pool("c", maps, "mean", mask), maps.mean((2, 3)))


# -- the ground truth: a detector of a pattern anywhere --------------------------------------------------------------

SIZE = 16
PATTERN = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 1.0]])  # a small X


def _backgrounds(n: int, gen: torch.Generator) -> torch.Tensor:
    """Smooth random images: no texture, nothing the detector answers to."""
    coarse = torch.rand(n, 3, 4, 4, generator=gen)
    img = nn.functional.interpolate(coarse, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    return (img + 0.03 * torch.randn(img.shape, generator=gen)).clamp(0, 1)


def _with_pattern(n: int, gen: torch.Generator) -> torch.Tensor:
    """Backgrounds with the X at a random position of each image."""
    images = _backgrounds(n, gen)
    rows = torch.randint(0, SIZE - 2, (n,), generator=gen)
    cols = torch.randint(0, SIZE - 2, (n,), generator=gen)
    for i, (r, c) in enumerate(zip(rows.tolist(), cols.tolist())):
        images[i, :, r:r + 3, c:c + 3] = PATTERN
    return images


class _PatternDetector(nn.Module):
    """Class 1's logit is how strongly the X shows anywhere: channel 0 of ``fire``, max-pooled over positions.

    ``detect``'s channel 0 is the X's matched filter, less a threshold (its bias)
    that smooth backgrounds stay under; the other seven channels are random
    filters the target does not read.  Every filter is zero-mean in each colour
    (edges, not brightness).  ``fire`` (a ReLU) is the layer tested: the mean of a
    linear layer's map over positions is little more than the image's mean.
    """

    def __init__(self) -> None:
        super().__init__()
        self.detect = nn.Conv2d(3, 8, 3)
        self.fire = nn.ReLU()
        with torch.no_grad():
            gen = torch.Generator().manual_seed(0)
            weight = 0.3 * torch.randn(self.detect.weight.shape, generator=gen)
            weight[0] = PATTERN.expand(3, 3, 3)
            self.detect.weight.copy_(weight - weight.mean((2, 3), keepdim=True))
            self.detect.bias.zero_()
            self.detect.bias[0] = -0.1  # the X gives 6.7; the pixel noise of a background passes 0.1 at 1 in 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        found = self.fire(self.detect(x))[:, 0].amax((1, 2))
        return torch.stack([torch.zeros_like(found), found], 1)


@pytest.mark.slow
def test_a_pattern_anywhere_is_found_by_the_spatial_mean_and_a_random_set_is_not():
    model = _PatternDetector().eval()
    gen = torch.Generator().manual_seed(1)
    concept = _with_pattern(30, gen)
    inputs = _with_pattern(20, gen)  # class 1: the detector fires, so the target has a gradient
    randoms = [_backgrounds(30, gen) for _ in range(10)]
    pseudo = _backgrounds(30, gen)
    with torch.no_grad():
        assert (model(inputs)[:, 1] > 1.0).all() and (model(torch.cat(randoms))[:, 1] < 0.5).all()
    engine = TCAV(model, pooling="mean")
    found = engine.test(concept, target=1, inputs=inputs, layers=["fire"], random_sets=randoms).layers[0]
    assert found.significant and found.p_value < 1e-6 and found.statistic > 0.9
    chance = engine.test(pseudo, target=1, inputs=inputs, layers=["fire"], random_sets=randoms).layers[0]
    assert not chance.significant and chance.p_value > 0.05
    # flattened, each CAV is spread over the positions the concept's X took, while each input's gradient
    # sits at the one position of its own X: the two are nearly orthogonal
    flat = TCAV(model).test(concept, target=1, inputs=inputs, layers=["fire"], random_sets=randoms).layers[0]
    assert flat.statistic < found.statistic / 10


# -- the cache ----------------------------------------------------------------------------------------------------


class _Recording(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[tuple[str, str], Any] = {}

    def fetch_many(self, kind: str, keys: list[str], compute_many: Any, **kwargs: Any) -> Any:
        values = super().fetch_many(kind, keys, compute_many, **kwargs)
        self.seen.update({(kind, key): values[key] for key in keys})
        return values


@pytest.mark.slow
def test_a_mean_pooled_and_a_flattened_run_of_one_layer_share_no_entry():
    model, x = _model(2)
    model = model.float()
    gen = torch.Generator().manual_seed(5)
    sets = [torch.rand(8, 3, 9, 8, generator=gen) for _ in range(4)]
    kwargs: dict[str, Any] = {"target": 1, "inputs": x.float(), "layers": ["block"], "random_sets": sets[1:]}
    keys = {}
    for pooling in ("mean", "flatten"):
        store = _Recording()
        TCAV(model, pooling=pooling, store=store).test(sets[0], **kwargs)
        keys[pooling] = store.seen
    assert {kind for kind, _ in keys["mean"]} == {"activations", "gradients", "cav"}
    assert not set(keys["mean"]) & set(keys["flatten"])
    for (kind, _), value in keys["mean"].items():  # every stored width is the channel count
        width = {"activations": "activations", "gradients": "gradients", "cav": "weights"}[kind]
        assert value[width].shape[-1] == 5
    for (kind, _), value in keys["flatten"].items():
        width = {"activations": "activations", "gradients": "gradients", "cav": "weights"}[kind]
        assert value[width].shape[-1] == 5 * 9 * 8
    # one store for both: the flattened run computes all it computes alone, nothing of the mean-pooled run is read
    alone = MemoryStore()
    TCAV(model, store=alone).test(sets[0], **kwargs)
    shared = MemoryStore()
    TCAV(model, pooling="mean", store=shared).test(sets[0], **kwargs)
    before = shared.computed.copy()
    TCAV(model, store=shared).test(sets[0], **kwargs)
    assert shared.computed - before == alone.computed
    engine = TCAV(model, pooling="mean")
    flat = TCAV(model)
    s = as_concept(sets[0], name="c")
    assert work_units.activation_key(engine, "m", "block", s) != work_units.activation_key(flat, "m", "block", s)

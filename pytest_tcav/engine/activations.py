"""Activations of example sets and target gradients at the studied layers.

This is the only module that runs the user's model.  It does the minimum of
model work TCAV needs: one no-grad forward per batch for all layers of a set
of examples (stopping once the deepest of them ran), and for the inputs one
forward plus one backward per batch giving the target's gradient at every layer
at once.  Integrated gradients replace each layer's activation in turn, so they
need a pass per layer, batched over all interpolation steps.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from pytest_tcav.engine import batches
from pytest_tcav.engine.batches import Examples
from pytest_tcav.engine.layers import LayerPoint, StopForward, capture, check_all_reached
from pytest_tcav.engine.outputs import Output, Target, target_values
from pytest_tcav.engine.pooling import check_layouts, pool, pool_gradient
from pytest_tcav.errors import ConceptDataError, ConfigurationError, LayerError, NonFiniteError, TCAVError

__all__ = ["METHODS", "Method", "Target", "concept_activations", "eval_mode", "gauss_legendre", "model_device",
           "target_gradients", "target_values"]

Method = Literal["gradient", "integrated_gradients"]
METHODS = ("gradient", "integrated_gradients")


def model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for buffer in model.buffers():
        return buffer.device
    return torch.device("cpu")


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode for the block and restore each one's own flag."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


def _batches(examples: Examples, batch_size: int) -> Iterator[Examples]:
    return batches.batches(examples, batch_size)


def _check_finite(what: str, layer: str, tensor: torch.Tensor) -> None:
    if all_finite(tensor):
        return
    finite = torch.isfinite(tensor).all(1) if tensor.dim() == 2 else torch.isfinite(tensor).all().reshape(1)
    if not bool(finite.all()):
        rows = torch.nonzero(~finite).flatten().tolist()
        shown = ", ".join(map(str, rows[:8])) + (f", ... ({len(rows)} in all)" if len(rows) > 8 else "")
        raise NonFiniteError(
            f"{what} at layer {layer!r} contain NaN or infinity (example(s) {shown} of {len(finite)}); "
            "check the inputs' preprocessing (NaN or huge values) and the model's numerical stability "
            "(overflow, division by zero, log or sqrt of values <= 0)"
        )


def all_finite(tensor: torch.Tensor) -> bool:
    """True when every value is finite; False means maybe not (look closer).

    A sum is NaN or infinite when any term is, so a finite sum proves them all
    finite, at the cost of one reduction (0.2 ms for 30 x 100,000 values here,
    where ``isfinite(...).all()`` takes 4 ms: benchmarks/engine_parts.py); a
    sum that overflows only sends the caller to the exact check.
    """
    if not (tensor.is_floating_point() or tensor.is_complex()) or not tensor.numel():
        return True
    return bool(torch.isfinite(tensor.sum()))


def _check_batched(layer: str, value: torch.Tensor, n: int) -> None:
    """A layer's activation must have one row per example, or flattening it would mix examples."""
    if value.dim() == 0 or value.shape[0] != n:
        raise ConceptDataError(
            f"layer {layer!r} gave an activation of shape {tuple(value.shape)} for a batch of {n} examples; "
            "TCAV needs activations whose first dimension is the batch. Either the examples are not "
            "batched (a set must be a tensor of shape (examples, *input shape); the model read a batch "
            "of them as one unbatched example), or the layer puts the batch elsewhere (e.g. a "
            "sequence-first RNN, nn.MultiheadAttention without batch_first=True): pick another layer"
        )


#: Concept passes on the CPU feed image batches to convolutional models in channels-last memory
#: order, oneDNN's native layout: the same activations up to float rounding (about 1e-6 relative),
#: in about half the time.  A model that cannot take them (``x.view`` on a feature map, say) raises,
#: and is then run on plain contiguous batches from that batch on.
CHANNELS_LAST_ON_CPU = True
_CHANNELS_LAST_FAILS: weakref.WeakKeyDictionary[nn.Module, bool] = weakref.WeakKeyDictionary()


def _channels_last_helps(model: nn.Module, examples: Examples, device: torch.device) -> bool:
    return (CHANNELS_LAST_ON_CPU and device.type == "cpu" and isinstance(examples, torch.Tensor)
            and examples.dim() == 4
            and examples.is_floating_point() and model not in _CHANNELS_LAST_FAILS
            and any(isinstance(m, nn.Conv2d) for m in model.modules()))


def _as_channels_last(batch: torch.Tensor) -> torch.Tensor:
    return batch.contiguous(memory_format=torch.channels_last)


def _forward_to_layers(model: nn.Module, modules: dict[str, nn.Module], point: LayerPoint,
                       batch: Examples, forward_kwargs: Mapping[str, Any] | None = None,
                       call: int | None = None) -> dict[str, torch.Tensor]:
    """One no-grad forward that stops once every layer was recorded; returns what was recorded."""
    with capture(modules, point, call=call, stop_when_done=True) as seen:
        try:
            batches.call(model, batch, forward_kwargs)
        except StopForward:
            pass
    return seen


def concept_activations(
    model: nn.Module,
    modules: dict[str, nn.Module],
    examples: Examples,
    *,
    point: LayerPoint = "output",
    batch_size: int = 64,
    device: torch.device | None = None,
    pooling: str = "flatten",
    forward_kwargs: Mapping[str, Any] | None = None,
    call: int | None = None,
) -> dict[str, torch.Tensor]:
    """Activations as CAVs see them (examples x features, float32, CPU) at every layer, one pass per batch.

    ``pooling`` (:mod:`.pooling`) reduces a ``(batch, positions, features)`` or
    ``(batch, channels, *spatial)`` activation to one row per example; ``"flatten"``
    keeps every value.  ``call`` is which call of a module run several times per
    pass is studied (:func:`.layers.capture`).
    """
    check_layouts(modules, pooling)
    device = device or model_device(model)
    settings = (point, batch_size, device, pooling, forward_kwargs, call)
    if _channels_last_helps(model, examples, device):
        try:
            return _activations_of_batches(model, modules, examples, *settings, True)
        except TCAVError:
            raise  # bad input or a bad layer: the user's error, whatever the memory layout
        except Exception:
            # Either the model assumes contiguous images (x.view on a feature map) or the input is
            # bad.  The plain path tells which: if it fails too, its error is the user's; if it
            # works, this model takes the plain path from now on, so its values never depend on
            # which checks ran before.
            result = _activations_of_batches(model, modules, examples, *settings, False)
            _CHANNELS_LAST_FAILS[model] = True
            return result
    return _activations_of_batches(model, modules, examples, *settings, False)


def _activations_of_batches(model, modules, examples, point, batch_size, device, pooling, forward_kwargs, call,
                            channels_last):
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in modules}
    with eval_mode(model), torch.no_grad():
        for batch in _batches(examples, batch_size):
            n = batches.length(batch)
            moved = batches.to(batch, device)
            if channels_last:
                assert isinstance(moved, torch.Tensor)
                moved = _as_channels_last(moved)
            seen = _forward_to_layers(model, modules, point, moved, forward_kwargs, call)
            check_all_reached(modules, seen)
            mask = batches.attention_mask(batch)
            for name in modules:
                _check_batched(name, seen[name], n)
                parts[name].append(pool(name, seen[name].detach(), pooling, mask).cpu())
    result = {name: torch.cat(chunks) for name, chunks in parts.items()}
    for name, acts in result.items():
        _check_finite("activations", name, acts)
    return result


def gauss_legendre(n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Interpolation points in [0, 1] and their weights (summing to 1)."""
    if n_steps < 1:
        raise ConfigurationError(f"n_steps must be positive, got {n_steps}")
    nodes, weights = np.polynomial.legendre.leggauss(n_steps)
    return 0.5 * (nodes + 1.0), 0.5 * weights


def _forward_output(model: nn.Module, batch: Examples, forward_kwargs: Mapping[str, Any] | None) -> Any:
    return batches.call(model, batch, forward_kwargs)


def target_gradients(
    model: nn.Module,
    modules: dict[str, nn.Module],
    inputs: Examples,
    target: Target,
    *,
    method: Method = "gradient",
    n_steps: int = 5,
    point: LayerPoint = "output",
    batch_size: int = 64,
    device: torch.device | None = None,
    pooling: str = "flatten",
    forward_kwargs: Mapping[str, Any] | None = None,
    output: Output = None,
    call: int | None = None,
) -> dict[str, torch.Tensor]:
    """Gradient of the target with respect to each layer's activation as the CAV sees it (inputs x features).

    With a ``pooling`` other than ``"flatten"`` this is the gradient with
    respect to the pooled representation (:func:`.pooling.pool_gradient`).
    """
    if method not in METHODS:
        raise ConfigurationError(f"method must be one of {METHODS}, got {method!r}")
    check_layouts(modules, pooling)
    device = device or model_device(model)
    run = _Run(point, batch_size, device, pooling, forward_kwargs, target, output, call)
    with eval_mode(model):
        if method == "gradient":
            grads = _plain_gradients(model, modules, inputs, run)
        else:
            grads = {
                name: _integrated_gradients(model, name, module, inputs, n_steps, run)
                for name, module in modules.items()
            }
    for name, g in grads.items():
        _check_finite("target gradients", name, g)
    return grads


class _Run:
    """The settings of one gradient computation, passed down as one value."""

    def __init__(self, point: LayerPoint, batch_size: int, device: torch.device, pooling: str,
                 forward_kwargs: Mapping[str, Any] | None, target: Target, output: Output,
                 call: int | None = None) -> None:
        self.point, self.batch_size, self.device, self.pooling = point, batch_size, device, pooling
        self.forward_kwargs, self.target, self.output, self.call = forward_kwargs, target, output, call

    def values(self, model: nn.Module, batch: Examples) -> torch.Tensor:
        raw = _forward_output(model, batch, self.forward_kwargs)
        return target_values(raw, self.target, self.output, batches.length(batch), batches.attention_mask(batch))


def _differentiable(_name: str, value: torch.Tensor) -> torch.Tensor | None:
    """Let the gradient reach a layer whose activation nothing upstream differentiates.

    Integer inputs (token ids) through parameters with ``requires_grad=False``
    give activations outside any graph.  The gradient with respect to the
    activation does not depend on upstream parameters, so the layer's output
    is continued from a fresh leaf; the user's parameters are not touched.
    The clone keeps the tensor the model goes on with a non-leaf, so
    in-place operations downstream (``ReLU(inplace=True)``) stay legal.
    """
    if value.requires_grad or not (value.is_floating_point() or value.is_complex()):
        return None
    return value.detach().requires_grad_(True).clone()


def _leaf(t: torch.Tensor) -> torch.Tensor:
    return t.detach().requires_grad_(True) if t.is_floating_point() else t


def _plain_gradients(model, modules, inputs, run: _Run):
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in modules}
    names = list(modules)
    for batch in _batches(inputs, run.batch_size):
        n = batches.length(batch)
        # the graph exists even if no parameter needs grad
        x = batches.map_parts(batches.to(batch, run.device), _leaf)

        def prepare(name: str, value: torch.Tensor, n: int = n) -> torch.Tensor | None:
            _check_batched(name, value, n)  # in the hook: before the model's own code trips over it
            return _differentiable(name, value)

        with torch.enable_grad(), capture(modules, run.point, call=run.call, replace=prepare) as seen:
            values = run.values(model, x)
        check_all_reached(modules, seen)
        acts = [seen[name] for name in names]
        for name, act in zip(names, acts):
            if not act.requires_grad:
                raise LayerError(
                    f"layer {name!r} outputs {act.dtype} values, which have no gradient; pick a layer "
                    "with a floating-point output (e.g. the embedding rather than the token ids)"
                )
        grads = torch.autograd.grad(values.sum(), acts, allow_unused=True)
        mask = batches.attention_mask(batch)
        for name, act, grad in zip(names, acts, grads):
            if grad is None:
                grad = torch.zeros_like(act)
            parts[name].append(pool_gradient(name, grad.detach(), run.pooling, mask).cpu())
    return {name: torch.cat(chunks) for name, chunks in parts.items()}


def _zero_input(x: Examples) -> Examples:
    """The integrated gradients' baseline input: every part zero, except the attention mask (same positions)."""
    if isinstance(x, dict):
        return {k: v if k == batches.MASK_KEY else torch.zeros_like(v) for k, v in x.items()}
    return batches.map_parts(x, torch.zeros_like)


def _integrated_gradients(model, name, module, inputs, n_steps, run: _Run):
    """Layer integrated gradients without multiplying by the activation difference.

    The baseline activation is the layer's activation on an all-zero input, and
    the layer's activation is interpolated towards the input's own; the
    weighted average of gradients at Gauss-Legendre points is returned.
    """
    alphas, weights = gauss_legendre(n_steps)
    modules = {name: module}
    # The baseline activation is computed on a zero batch of the same size as the
    # inputs' batch, as Captum does.  Convolutions pick algorithms by batch size, so
    # a one-example zero batch differs in the last float bits; near the baseline
    # (all-zero images give nearly uniform feature maps, full of near-ties in max
    # pooling) such bits can move a gradient by percents, and the two libraries
    # would then disagree for no reason a user could act on.
    baselines: dict[int, torch.Tensor] = {}

    def layer_activation(x: Examples) -> torch.Tensor:
        with torch.no_grad(), capture(modules, run.point, call=run.call, stop_when_done=True) as seen:
            try:
                batches.call(model, x, run.forward_kwargs)
            except StopForward:
                pass
        check_all_reached(modules, seen)
        _check_batched(name, seen[name], batches.length(x))
        return seen[name].detach()

    rows_per_batch = max(1, run.batch_size // n_steps)
    parts: list[torch.Tensor] = []
    for batch in _batches(inputs, rows_per_batch):
        x = batches.to(batch, run.device)
        n = batches.length(x)
        if n not in baselines:
            baselines[n] = layer_activation(_zero_input(x))
        baseline = baselines[n]
        act = layer_activation(x)
        steps = torch.cat([baseline + float(a) * (act - baseline) for a in alphas]).requires_grad_(True)
        if isinstance(x, torch.Tensor):
            expanded: Examples = x.repeat((n_steps,) + (1,) * (x.dim() - 1))
        else:
            expanded = batches.concat([x] * n_steps)

        def substitute(_name: str, _value: torch.Tensor, steps: torch.Tensor = steps) -> torch.Tensor:
            return steps

        with torch.enable_grad(), capture(modules, run.point, call=run.call, replace=substitute):
            values = run.values(model, expanded)
        (grad,) = torch.autograd.grad(values.sum(), [steps], allow_unused=True)
        if grad is None:
            grad = torch.zeros_like(steps)
        if run.pooling == "flatten" or act.dim() <= 2:
            grad = grad.reshape(n_steps, n, -1)
            w = torch.as_tensor(weights, dtype=grad.dtype, device=grad.device).view(n_steps, 1, 1)
            parts.append((grad * w).sum(0).float().cpu())
            continue
        grad = grad.reshape(n_steps, *act.shape)
        w = torch.as_tensor(weights, dtype=grad.dtype, device=grad.device).view(n_steps, *([1] * act.dim()))
        parts.append(pool_gradient(name, (grad * w).sum(0), run.pooling, batches.attention_mask(batch)).cpu())
    return torch.cat(parts)

"""What a CAV sees of a layer with a sequence or spatial axis, and the gradient that goes with it.

A token layer gives ``(batch, positions, features)``.  Flattening it (the
default, Captum's and the reference implementation's choice) makes every
position a separate feature, padding included, so two sets padded to
different lengths cannot even be compared, and a CAV between short phrases and
long sentences learns the length.  A pooling maps the activation to one
``features``-wide vector per example; the directional derivative is then the
derivative of the target when the pooled representation moves along the CAV,
which is derived in docs/statistics.md:

- ``"mean"``: the mean over real positions (``attention_mask`` 1, all positions
  without a mask); moving every real position by ``eps * v`` moves the mean by
  ``eps * v``, so the gradient is the sum of the real positions' gradients;
- ``"first"``: position 0 (a CLS token); its gradient;
- ``"last"``: the last real position of each example; its gradient.

A convolution's layer gives ``(batch, channels, *spatial)``, channels first:
every activation of four or more dimensions is read so (2-D and 3-D
convolutions).  ``"mean"`` is the mean over every spatial position, one
``channels``-wide vector per example, and its gradient the sum of the
positions' gradients, as for tokens (every position counts: an
``attention_mask`` counts tokens, not the positions of a feature map).
``"first"`` and ``"last"`` pick a token, which a feature map has not: refused.
A three-dimensional activation is always read as tokens, so a 1-D
convolution's ``(batch, channels, length)`` is refused under any pooling but
``"flatten"`` where the layer is a 1-D convolution or pooling module
(:func:`check_layouts`), the case that can be told from the module.  No
``"max"``: docs/models-and-inputs.md says why.

Activations without a sequence axis (``(batch, features)``) are the same under
every pooling.
"""

from __future__ import annotations

import torch
from torch import nn

from pytest_tcav.errors import ConceptDataError, LayerError

POOLINGS = ("flatten", "mean", "first", "last")


def _mask_for(layer: str, value: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor | None:
    if mask is None:
        return None
    if mask.shape[1] != value.shape[1]:
        raise ConceptDataError(
            f"layer {layer!r} has {value.shape[1]} positions but the examples' attention_mask has "
            f"{mask.shape[1]}; pooling over real positions needs a layer with one position per token: "
            "pick such a layer, or pooling='first' / 'flatten'"
        )
    return mask.to(value.device).ne(0)


def _last_index(value: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    positions = torch.arange(value.shape[1], device=value.device)
    if mask is None:
        return torch.full((value.shape[0],), value.shape[1] - 1, device=value.device, dtype=torch.long)
    return torch.where(mask, positions, torch.zeros_like(positions)).amax(1)


def _check_spatial(layer: str, value: torch.Tensor, pooling: str) -> None:
    if pooling != "mean":
        raise LayerError(
            f"layer {layer!r} gives activations of shape {tuple(value.shape)}, read as (batch, channels, "
            f"*spatial); pooling={pooling!r} picks a token, which a feature map has not: use pooling='mean' "
            "(the mean over the spatial positions) or 'flatten' (tcav_pooling) for this layer"
        )


# Modules whose three-dimensional activation (the output, and the input too) is (batch, channels, length).
_CHANNELS_FIRST_1D = (nn.Conv1d, nn.ConvTranspose1d, nn.MaxPool1d, nn.AvgPool1d, nn.AdaptiveMaxPool1d,
                      nn.AdaptiveAvgPool1d, nn.LPPool1d)


def check_layouts(modules: dict[str, nn.Module], pooling: str) -> None:
    """Refuse a pooling on a 1-D convolution, whose ``(batch, channels, length)`` would be read as tokens."""
    if pooling == "flatten":
        return
    for name, module in modules.items():
        if isinstance(module, _CHANNELS_FIRST_1D):
            raise LayerError(
                f"layer {name!r} is a {type(module).__name__}: its activations are (batch, channels, length), "
                f"but a three-dimensional activation is read as tokens (batch, positions, features), so "
                f"pooling={pooling!r} would pool over channels; use pooling='flatten' (tcav_pooling) for this "
                "layer, or a layer of shape (batch, length, channels) (docs/models-and-inputs.md, Pooling)"
            )


def pool(layer: str, value: torch.Tensor, pooling: str, mask: torch.Tensor | None) -> torch.Tensor:
    """One row per example (float32): the activation as the CAV sees it."""
    return _reduce(layer, value, pooling, mask, average=True)


def pool_gradient(layer: str, grad: torch.Tensor, pooling: str, mask: torch.Tensor | None) -> torch.Tensor:
    """The gradient with respect to the pooled representation, as docs/statistics.md derives it.

    The same positions as :func:`pool`; under ``"mean"`` the real (or spatial)
    positions' gradients are summed, not averaged: moving every position along
    the CAV moves the mean along it by the same step.
    """
    return _reduce(layer, grad, pooling, mask, average=False)


def _reduce(layer: str, value: torch.Tensor, pooling: str, mask: torch.Tensor | None, *,
            average: bool) -> torch.Tensor:
    n = value.shape[0]
    if pooling == "flatten" or value.dim() <= 2:
        return value.reshape(n, -1).float()
    if value.dim() > 3:  # (batch, channels, *spatial)
        _check_spatial(layer, value, pooling)  # an attention_mask's tokens are none of its positions
        spatial = tuple(range(2, value.dim()))
        value = value.float()
        return value.mean(spatial) if average else value.sum(spatial)
    value = value.float()
    real = _mask_for(layer, value, mask)
    if pooling == "first":
        return value[:, 0]
    if pooling == "last":
        return value[torch.arange(n, device=value.device), _last_index(value, real)]
    if real is None:
        return value.mean(1) if average else value.sum(1)
    weights = real.unsqueeze(-1).to(value.dtype)
    total = (value * weights).sum(1)
    return total / weights.sum(1).clamp_min(1.0) if average else total

"""From what a model returns to one scalar per example: the target.

Models return a tensor, a mapping (a dict, a Hugging Face ``ModelOutput``), a
dataclass or a tuple.  The rule, in this order:

- a callable ``target`` receives the model's raw output, whatever it is, and
  picks its own scalar per example;
- otherwise ``output=`` (a key, an attribute name or an index, or a callable
  of the raw output) picks the tensor a class index reads;
- otherwise a tensor is itself; a mapping or dataclass with ``logits`` gives
  its logits; a tuple or list gives its first tensor.

Anything else is an error naming what the model returned and how to pick.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from pytest_tcav.errors import ConfigurationError, TargetError

Target = int | Callable[[Any], torch.Tensor]
#: How to pick the tensor a class-index target reads from a structured output.
Output = str | int | Callable[[Any], torch.Tensor] | None


def _describe(value: Any) -> str:
    kind = type(value).__name__
    if isinstance(value, Mapping):
        return f"{kind} with keys {', '.join(repr(k) for k in list(value)[:8])}"
    if dataclasses.is_dataclass(value):
        return f"{kind} with fields {', '.join(repr(f.name) for f in dataclasses.fields(value)[:8])}"
    if isinstance(value, (tuple, list)):
        return f"{kind} of ({', '.join(type(v).__name__ for v in value[:6])})"
    return kind


def _pick(raw: Any, output: str | int) -> Any:
    if isinstance(raw, Mapping) and output in raw:
        return raw[output]
    if isinstance(output, str) and not isinstance(raw, Mapping) and hasattr(raw, output):
        return getattr(raw, output)
    if isinstance(output, int) and not isinstance(output, bool) and isinstance(raw, (tuple, list)) \
            and -len(raw) <= output < len(raw):
        return raw[output]
    raise TargetError(f"output={output!r} picks nothing from the model's output, a {_describe(raw)}; "
                      "give one of its keys, fields or indices, or a callable")


def model_output(raw: Any, output: Output = None) -> torch.Tensor:
    """The tensor a class-index target reads, by the rule above."""
    if output is not None:
        picked = output(raw) if callable(output) else _pick(raw, output)
        if not isinstance(picked, torch.Tensor):
            raise TargetError(f"output={getattr(output, '__qualname__', output)!r} gave a "
                              f"{type(picked).__name__}, not a tensor")
        return picked
    if isinstance(raw, torch.Tensor):
        return raw
    if isinstance(raw, Mapping) and isinstance(raw.get("logits"), torch.Tensor):
        return raw["logits"]
    if not isinstance(raw, Mapping) and dataclasses.is_dataclass(raw) \
            and isinstance(getattr(raw, "logits", None), torch.Tensor):
        return raw.logits  # type: ignore[union-attr]
    if isinstance(raw, (tuple, list)):
        for value in raw:
            if isinstance(value, torch.Tensor):
                return value
    raise TargetError(
        f"the model returned a {_describe(raw)}, and the rule (a tensor; 'logits'; a tuple's first tensor) "
        "finds no tensor in it; pick one with output=KEY (or a callable of the output), or give a "
        "callable target, which receives the raw output"
    )


def check_output_and_target(target: Target, output: Output) -> None:
    if output is not None and callable(target):
        raise ConfigurationError(
            "output= picks the tensor a class-index target reads; a callable target receives the model's "
            "raw output and picks its own values: give one of the two"
        )


def target_values(raw: Any, target: Target, output: Output = None, n: int | None = None) -> torch.Tensor:
    """One scalar per example (``n`` of them, when the caller knows): the target logit, or the callable's values."""
    if callable(target):
        values = target(raw)
        n = _batch_size(raw) if n is None else n
        if not isinstance(values, torch.Tensor) or values.dim() != 1 or (n is not None and values.shape[0] != n):
            shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
            expected = f"shape ({n},)" if n is not None else "shape (batch,)"
            raise TargetError(
                f"the target callable must return one scalar per example, {expected}; it returned {shape}"
            )
        return values
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
        raise TargetError(f"target must be a class index or a callable, got {target!r}")
    tensor = model_output(raw, output)
    if tensor.dim() != 2:
        raise TargetError(
            f"a class-index target needs a model output of shape (batch, classes); got "
            f"{tuple(tensor.shape)}: pass a callable target instead"
        )
    if not 0 <= int(target) < tensor.shape[1]:
        raise TargetError(
            f"target {int(target)} is out of range for a model with {tensor.shape[1]} outputs "
            f"(valid: 0..{tensor.shape[1] - 1})"
        )
    return tensor[:, int(target)]


def _batch_size(raw: Any) -> int | None:
    """The batch size of a raw output, when its default tensor tells (to check a callable target's values)."""
    try:
        return int(model_output(raw).shape[0])
    except (TargetError, IndexError):
        return None

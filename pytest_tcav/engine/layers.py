"""Naming layers and capturing what flows through them.

Layers are addressed by their ``model.named_modules()`` names, the names users
see when they print a model.  This module is the only place that registers
hooks on the user's model; every hook is removed when the ``with`` block ends,
also after an exception, so the model is left exactly as it was.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Callable, Iterator, Sequence
from typing import Literal

import torch
from torch import nn

from pytest_tcav.errors import ConfigurationError, LayerError

LayerPoint = Literal["output", "input"]


def resolve_layers(
    model: nn.Module, names: Sequence[str], point: LayerPoint = "output"
) -> dict[str, nn.Module]:
    """Map layer names to modules, failing with the closest names for a typo."""
    if point not in ("output", "input"):
        raise ConfigurationError(f"layer point must be 'output' or 'input', got {point!r}")
    if isinstance(names, str):
        names = [names]
    if len(names) == 0:
        raise ConfigurationError("at least one layer name is needed")
    if len(set(names)) != len(names):
        raise ConfigurationError(f"layer names are repeated: {list(names)}")
    modules = dict(model.named_modules())
    resolved: dict[str, nn.Module] = {}
    for name in names:
        if not isinstance(name, str):
            raise ConfigurationError(f"layer names must be strings, got {name!r}")
        if name not in modules or name == "":
            candidates = [n for n in modules if n]
            close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.5)
            hint = (
                f" Did you mean {', '.join(repr(c) for c in close)}?"
                if close
                else f" Known layers include: {', '.join(repr(c) for c in candidates[:12])}"
                + (" ..." if len(candidates) > 12 else "")
            )
            raise LayerError(f"model {type(model).__name__} has no layer {name!r}.{hint}")
        resolved[name] = modules[name]
    return resolved


class StopForward(Exception):
    """Raised from a hook to end a forward pass once every wanted layer was seen."""


def _describe(value: object) -> str:
    """``tuple of (Tensor, tuple)``, ``dict with keys 'logits', 'hidden'``: what a layer gave instead of a tensor."""
    kind = type(value).__name__
    if isinstance(value, dict):
        keys = ", ".join(repr(k) for k in list(value)[:6]) + (" ..." if len(value) > 6 else "")
        return f"{kind} with keys {keys}" if value else f"empty {kind}"
    if isinstance(value, (tuple, list)):
        items = ", ".join(type(v).__name__ for v in value[:6]) + (" ..." if len(value) > 6 else "")
        return f"{kind} of ({items})"
    return kind


def _as_tensor(name: str, value: object, point: LayerPoint, module: nn.Module | None = None) -> torch.Tensor:
    """The one tensor a layer gives, by the documented rule, or a :class:`LayerError` saying what to do.

    Output: a tensor, or a tuple/list holding exactly one tensor (unambiguous).
    Input: the first positional argument of ``forward``, if it is a tensor.
    Anything else (an LSTM's ``(output, (h, c))``, a dict of outputs) would
    need a guess about which tensor is meant, so it fails, naming the layer's
    submodules that could be used instead.
    """
    if isinstance(value, torch.Tensor):
        return value
    if point == "input" and isinstance(value, tuple) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    if point == "output" and isinstance(value, (tuple, list)) and type(value) in (tuple, list) and len(value) == 1 \
            and isinstance(value[0], torch.Tensor):
        return value[0]
    children = [f"{name}.{child}" for child, _ in module.named_children()] if module is not None else []
    hint = (f"pick one of its submodules ({', '.join(map(repr, children[:6]))}"
            f"{' ...' if len(children) > 6 else ''}) or " if children else "")
    raise LayerError(
        f"layer {name!r} {point} is a {_describe(value)}, not a tensor, and TCAV needs exactly one tensor "
        f"per layer; {hint}wrap the layer in a module whose forward returns the one tensor to study "
        f"(e.g. an LSTM's output, without its state)"
    )


@contextlib.contextmanager
def capture(
    modules: dict[str, nn.Module],
    point: LayerPoint,
    *,
    stop_when_done: bool = False,
    replace: Callable[[str, torch.Tensor], torch.Tensor | None] | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """Record the activation of each layer during forward passes inside the block.

    ``replace`` lets a caller substitute the activation (integrated gradients
    scales it); ``stop_when_done`` ends the pass early by raising
    :class:`StopForward` once every layer was recorded, which callers catch.
    """
    seen: dict[str, torch.Tensor] = {}
    handles = []

    def make_hook(name: str):
        def record(value: torch.Tensor) -> torch.Tensor | None:
            if name in seen:
                raise LayerError(
                    f"layer {name!r} ran twice in one forward pass; pick a module that is "
                    "called once per example"
                )
            new = replace(name, value) if replace is not None else None
            seen[name] = new if new is not None else value
            if stop_when_done and len(seen) == len(modules):
                raise StopForward
            return new

        if point == "output":

            def fwd_hook(module, _args, output):
                tensor = _as_tensor(name, output, "output", module)
                new = record(tensor)
                if new is not None and tensor is not output:
                    return type(output)([new])  # a one-tensor tuple or list keeps its type
                return new

            return fwd_hook

        def pre_hook(module, args):
            tensor = _as_tensor(name, args, "input", module)
            new = record(tensor)
            if new is not None:
                return (new, *args[1:])
            return None

        return pre_hook

    try:
        for name, module in modules.items():
            hook = make_hook(name)
            if point == "output":
                handles.append(module.register_forward_hook(hook))
            else:
                handles.append(module.register_forward_pre_hook(hook))
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def check_all_reached(modules: dict[str, nn.Module], seen: dict[str, torch.Tensor]) -> None:
    missing = [name for name in modules if name not in seen]
    if missing:
        raise LayerError(
            f"layer(s) {missing} were never reached in the forward pass; they exist in the "
            "model but forward() does not call them for these inputs (an unused or conditional "
            "branch): pick layers that forward() runs on every input"
        )

"""Naming layers and capturing what flows through them.

Layers are addressed by their ``model.named_modules()`` names, the names users
see when they print a model, optionally followed by a selector that names one
tensor of a structured output (``"rnn[0]"``, ``"enc['last_hidden_state']"``:
:mod:`.layer_parts`).  This module is the only place that registers
hooks on the user's model; every hook is removed when the ``with`` block ends,
also after an exception, so the model is left exactly as it was.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
from collections.abc import Callable, Iterator, Sequence
from typing import Literal

import torch
from torch import nn

from pytest_tcav.engine import layer_parts
from pytest_tcav.errors import ConfigurationError, LayerError

LayerPoint = Literal["output", "input"]


def named_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every name a module can be reached by: a module held under two attributes has both names."""
    return dict(model.named_modules(remove_duplicate=False))


def resolve_layers(
    model: nn.Module, names: Sequence[str], point: LayerPoint = "output",
    reached: Callable[[], list[str]] | None = None,
) -> dict[str, nn.Module]:
    """Map layer names to modules; every unknown name is reported at once, with the closest names.

    ``reached``, when given, lists the layers a forward pass runs: only those
    are suggested (a module that exists but never runs as a module, such as
    ``nn.MultiheadAttention``'s ``out_proj``, would only fail next).  It is
    called only when a name is unknown.
    """
    if point not in ("output", "input"):
        raise ConfigurationError(f"layer point must be 'output' or 'input', got {point!r}")
    if isinstance(names, str):
        names = [names]
    if len(names) == 0:
        raise ConfigurationError("at least one layer name is needed")
    if len(set(names)) != len(names):
        raise ConfigurationError(f"layer names are repeated: {list(names)}")
    modules = named_layers(model)
    for name in names:
        if not isinstance(name, str):
            raise ConfigurationError(f"layer names must be strings, got {name!r}")
    module_names = {name: module_name(name) for name in names}
    unknown = [name for name in names if module_names[name] not in modules or module_names[name] == ""]
    if unknown:
        raise _unknown_layers(model, unknown, [n for n in (reached() if reached else modules) if n],
                              reached is not None)
    if point == "input":
        _refuse_selectors_of_inputs(names)
    return {name: modules[module_names[name]] for name in names}


def module_name(name: str) -> str:
    """The module a layer name taps: the part before its selector (``"rnn"`` of ``"rnn[1][0]"``)."""
    return layer_parts.split_layer_name(name)[0]


def _selector(name: str) -> layer_parts.Path:
    return layer_parts.split_layer_name(name)[1]


def _refuse_selectors_of_inputs(names: Sequence[str]) -> None:
    selected = [name for name in names if _selector(name)]
    if selected:
        raise ConfigurationError(
            f"layer {selected[0]!r} selects a part of its module's output, but layer_point='input' studies the "
            f"input of {module_name(selected[0])!r}; name the module alone ({module_name(selected[0])!r}: the first "
            "argument of its forward), or study the output of the module that computes the part"
        )


def _unknown_layers(model: nn.Module, unknown: list[str], candidates: list[str], ran: bool) -> LayerError:
    what = "layers that run in a forward pass" if ran else "layers"
    hints = []
    for name in unknown:
        selector = layer_parts.format_path(_selector(name))
        close = difflib.get_close_matches(module_name(name), candidates, n=5, cutoff=0.5)
        if close:
            hints.append(f"{'Did you mean' if len(unknown) == 1 else f'For {name!r}, did you mean'} "
                         f"{', '.join(repr(c + selector) for c in close)}?")
    if len(hints) < len(unknown):
        hints.append(f"Known {what} include: {', '.join(repr(c) for c in candidates[:12])}"
                     + (" ..." if len(candidates) > 12 else ""))
    listed = ", ".join(repr(n) for n in unknown)
    plural = "layer" if len(unknown) == 1 else f"{len(unknown)} of the layers:"
    return LayerError(f"model {type(model).__name__} has no {plural} {listed}. " + " ".join(hints))


def reached_layers(model: nn.Module, run: Callable[[], object]) -> list[str]:
    """The names (aliases included) of the modules that ``run`` calls, in the order they first run."""
    names: dict[nn.Module, list[str]] = {}
    for name, module in named_layers(model).items():
        if name:
            names.setdefault(module, []).append(name)
    order: list[str] = []
    handles = []

    def make_hook(module_names: list[str]) -> Callable[..., None]:
        def hook(_module: nn.Module, _args: object) -> None:
            for name in module_names:
                if name not in order:
                    order.append(name)
        return hook

    try:
        for module, module_names in names.items():
            handles.append(module.register_forward_pre_hook(make_hook(module_names)))
        with torch.no_grad():
            run()
    finally:
        for handle in handles:
            handle.remove()
    return order


class StopForward(Exception):
    """Raised from a hook to end a forward pass once every wanted layer was seen."""


def _tensor_index(value: object) -> int | None:
    """Where the one tensor of a plain tuple or list of one tensor and ``None``s is (attention modules)."""
    if type(value) not in (tuple, list):
        return None
    assert isinstance(value, (tuple, list))
    found = [k for k, v in enumerate(value) if isinstance(v, torch.Tensor)]
    if len(found) == 1 and all(v is None for k, v in enumerate(value) if k != found[0]):
        return found[0]
    return None


def _first_argument(module: nn.Module, args: tuple, kwargs: dict) -> tuple[str | int, object] | None:
    """``forward``'s first argument, positional or given by keyword (Hugging Face layers use keywords)."""
    if args:
        return 0, args[0]
    if not kwargs:
        return None
    try:
        first = next(iter(inspect.signature(module.forward).parameters))
    except (StopIteration, TypeError, ValueError):
        return None
    return (first, kwargs[first]) if first in kwargs else None


def _is_attention(module: nn.Module | None) -> bool:
    return isinstance(module, nn.MultiheadAttention) or "Attention" in type(module).__name__


def _tensor_path(name: str, output: object, module: nn.Module | None, module_name: str,
                 selector: layer_parts.Path) -> layer_parts.Path:
    """Where in a layer's output its studied tensor is, by the documented rule, or a :class:`LayerError`.

    The part the selector names (the whole output without one) must be a tensor,
    or a tuple/list holding exactly one tensor and otherwise only ``None``
    (``nn.MultiheadAttention(need_weights=False)``, Hugging Face attention
    modules), then that tensor.  Anything else (an LSTM's ``(output, (h, c))``,
    a dict of outputs) would need a guess about which tensor is meant, so it
    fails, listing the parts a selector can name and the layer's submodules.
    """
    value = layer_parts.select(name, module_name, output, selector)
    if isinstance(value, torch.Tensor):
        return selector
    if (index := _tensor_index(value)) is not None:
        return (*selector, index)
    where = f"{module_name}{layer_parts.format_path(selector)}"
    available = layer_parts.listing(value, where)
    # nn.MultiheadAttention's out_proj is never called as a module: no submodule of it can be studied
    children = ([f"{module_name}.{child}" for child, _ in module.named_children()]
                if module is not None and not isinstance(module, nn.MultiheadAttention) else [])
    submodules = (f"one of its submodules ({', '.join(map(repr, children[:6]))}{' ...' if len(children) > 6 else ''})"
                  if children and not selector else "")
    weights = (" (attention weights are returned next to the output: select the output, or call the module with "
               "need_weights=False)" if _is_attention(module) and not selector else "")
    if available:
        todo = f"name the part to study: {available}{weights}" + (f"; or pick {submodules}" if submodules else "")
    else:
        todo = (f"pick {submodules} or " if submodules else "") + (
            "wrap the layer in a module whose forward returns the one tensor to study")
    raise LayerError(f"layer {name!r}{'' if selector else ' output'} is a {layer_parts.describe(value)}, not a "
                     f"tensor, and TCAV needs exactly one tensor per layer; {todo}")


def _input_tensor(name: str, value: object, module: nn.Module) -> torch.Tensor:
    """The first argument of ``forward`` (positional or keyword), if it is a tensor, or a :class:`LayerError`."""
    if isinstance(value, torch.Tensor):
        return value
    children = [f"{name}.{child}" for child, _ in module.named_children()]
    hint = (f"pick one of its submodules ({', '.join(map(repr, children[:6]))}"
            f"{' ...' if len(children) > 6 else ''}) or " if children else "")
    raise LayerError(
        f"layer {name!r} input is a {layer_parts.describe(value)}, not a tensor, and TCAV needs exactly one tensor "
        f"per layer; {hint}study the output of the module that computes it"
    )


@contextlib.contextmanager
def capture(
    modules: dict[str, nn.Module],
    point: LayerPoint,
    *,
    call: int | None = None,
    stop_when_done: bool = False,
    replace: Callable[[str, torch.Tensor], torch.Tensor | None] | None = None,
) -> Iterator[Seen]:
    """Record the activation of each layer during forward passes inside the block.

    ``call`` is which call of a module that runs several times in one forward
    pass is studied (``layer_call``: 0 the first, 1 the second...); the others
    run untouched.  None studies modules that run once, and refuses one that runs
    again (a ReLU shared by a residual block, a layer shared across depths): which
    of its calls is meant is the user's choice, never a silent one.
    ``replace`` lets a caller substitute the activation (integrated gradients
    scales it); ``stop_when_done`` ends the pass early by raising
    :class:`StopForward` once every layer was recorded, which callers catch.
    """
    if point == "input":
        _refuse_selectors_of_inputs(list(modules))
    seen = Seen()
    handles = []

    def make_hook(name: str):
        def record(value: torch.Tensor) -> torch.Tensor | None:
            count = seen.calls.get(name, 0)
            seen.calls[name] = count + 1
            if call is None and count:
                raise LayerError(
                    f"layer {name!r} ran twice in one forward pass (its module is called more than once, "
                    "e.g. an activation shared within a block); pick a module that is called once per example, "
                    "or say which call to study with layer_call=N (0: the first call, 1: the second, ...)"
                )
            if call is not None and count != call:
                return None  # another call of the module: it runs untouched
            new = replace(name, value) if replace is not None else None
            seen[name] = new if new is not None else value
            if stop_when_done and len(seen) == len(modules):
                raise StopForward
            return new

        if point == "output":
            tapped, selector = layer_parts.split_layer_name(name)

            def fwd_hook(module, _args, output):
                path = _tensor_path(name, output, module, tapped, selector)
                tensor = layer_parts.select(name, tapped, output, path)
                assert isinstance(tensor, torch.Tensor)
                new = record(tensor)
                if new is not None and path:
                    return layer_parts.replaced(output, path, new)  # the same structure, one tensor replaced
                return new

            return fwd_hook

        def pre_hook(module, args, kwargs):
            first = _first_argument(module, args, kwargs)
            tensor = _input_tensor(name, args if first is None else first[1], module)
            new = record(tensor)
            if new is not None and first is not None:
                if first[0] == 0:
                    return (new, *args[1:]), kwargs
                return args, {**kwargs, first[0]: new}
            return None

        return pre_hook

    try:
        for name, module in modules.items():
            hook = make_hook(name)
            if point == "output":
                handles.append(module.register_forward_hook(hook))
            else:
                handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
        yield seen
    finally:
        for handle in handles:
            handle.remove()


class Seen(dict[str, torch.Tensor]):
    """The activations :func:`capture` recorded, by layer name, and how often each layer's module ran."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, int] = {}


def check_all_reached(modules: dict[str, nn.Module], seen: dict[str, torch.Tensor]) -> None:
    calls = getattr(seen, "calls", {})
    short = [name for name in modules if name not in seen and calls.get(name)]
    if short:
        ran = ", ".join(f"{name!r} {calls[name]} time(s)" for name in short)
        raise LayerError(
            f"layer_call asks for a call that did not happen: in one forward pass {ran} ran; layer_call counts "
            "from 0 (0: the first call)"
        )
    missing = [name for name in modules if name not in seen]
    if missing:
        raise LayerError(
            f"layer(s) {missing} were never reached in the forward pass; they exist in the "
            "model but forward() does not call them for these inputs (an unused or conditional "
            "branch): pick layers that forward() runs on every input"
        )

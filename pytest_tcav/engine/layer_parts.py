"""One tensor of a layer's structured output, named by a selector after the module's name.

``"rnn[0]"`` is the first item of what the module ``rnn`` returns (an LSTM's
output sequence), ``"rnn[1][0]"`` the first item of its second (the LSTM's
``h``), ``"encoder['last_hidden_state']"`` (or ``encoder["last_hidden_state"]``)
a key of a mapping, Hugging Face ``ModelOutput``s included (their fields are
their keys).  Indexes select in tuples and lists (named tuples too), keys in
mappings.  This module parses such names, finds the tensor they name in an
output, lists the parts an output has (for error messages), and puts a
replacement tensor back into a copy of the structure (integrated gradients).

A name without ``[`` has no selector: it is the module's name, unchanged, so
layer names, reports and cache keys of such layers are what they always were.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping

import torch

from pytest_tcav.errors import LayerError

Key = int | str
#: The keys from the module's output to the studied tensor, outermost first; () is the output itself.
Path = tuple[Key, ...]

_SELECTOR = re.compile(r"\[(?:(-?\d+)|'([^']*)'|\"([^\"]*)\")\]")
SYNTAX = "an index [0] or a key ['name'] (or [\"name\"]) after the module's name, e.g. 'rnn[0]', 'rnn[1][0]'"


def split_layer_name(name: str) -> tuple[str, Path]:
    """``"rnn[1][0]"`` -> ``("rnn", (1, 0))``; a name without ``[`` is all module name, with the empty path."""
    start = name.find("[")
    if start < 0:
        return name, ()
    module, rest = name[:start], name[start:]
    path: list[Key] = []
    position = 0
    while position < len(rest):
        match = _SELECTOR.match(rest, position)
        if match is None:
            raise LayerError(f"layer name {name!r} has a malformed selector at {rest[position:]!r}; a part of a "
                             f"layer's output is named by {SYNTAX}")
        index, single, double = match.groups()
        path.append(int(index) if index is not None else single if single is not None else double)
        position = match.end()
    return module, tuple(path)


def format_path(path: Path) -> str:
    return "".join(f"[{key}]" if isinstance(key, int) else f"[{key!r}]" for key in path)


def _children(value: object) -> list[tuple[Key, object]] | None:
    """The parts one level down, or None for a value that is not a structure selectors descend into."""
    if isinstance(value, torch.Tensor):
        return None
    if isinstance(value, Mapping):
        return [(k, v) for k, v in value.items() if isinstance(k, (int, str))]
    if isinstance(value, (tuple, list)):
        return list(enumerate(value))
    return None


def parts(value: object, prefix: str, limit: int = 12) -> list[str]:
    """``rnn[0]: (8, 12, 24)``, ...: the tensors inside a structured output, with the names that select them."""
    out: list[str] = []

    def walk(v: object, path: Path) -> None:
        if len(out) > limit:
            return
        if isinstance(v, torch.Tensor):
            out.append(f"{prefix}{format_path(path)}: {tuple(v.shape)}")
            return
        for key, child in _children(v) or []:
            walk(child, (*path, key))

    walk(value, ())
    return out[:limit] + (["..."] if len(out) > limit else [])


def listing(value: object, prefix: str) -> str:
    return ", ".join(parts(value, prefix))


def describe(value: object) -> str:
    """``tuple of (Tensor, tuple)``, ``dict with keys 'logits', 'hidden'``: what a layer gave instead of a tensor."""
    kind = type(value).__name__
    if isinstance(value, Mapping):
        keys = ", ".join(repr(k) for k in list(value)[:6]) + (" ..." if len(value) > 6 else "")
        return f"{kind} with keys {keys}" if value else f"empty {kind}"
    if isinstance(value, (tuple, list)):
        items = ", ".join(type(v).__name__ for v in value[:6]) + (" ..." if len(value) > 6 else "")
        return f"{kind} of ({items})"
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)}"
    return kind


def _child(value: object, key: Key) -> tuple[bool, object]:
    """(found, the part): an index of a tuple or list (negative ones count from the end), a key of a mapping."""
    if isinstance(value, torch.Tensor):
        return False, None
    if isinstance(value, Mapping):
        return (True, value[key]) if key in value else (False, None)
    if isinstance(value, (tuple, list)) and isinstance(key, int) and -len(value) <= key < len(value):
        return True, value[key]
    return False, None


def select(name: str, module_name: str, output: object, path: Path) -> object:
    """The part of ``output`` at ``path``, or a :class:`LayerError` naming the parts that exist."""
    value = output
    for depth, key in enumerate(path):
        found, part = _child(value, key)
        if not found:
            where = f"{module_name}{format_path(path[:depth])}"
            subject = f"the output of {module_name!r}" if depth == 0 else repr(where)
            if isinstance(value, torch.Tensor):
                what = (f"{subject} is a tensor of shape {tuple(value.shape)}, which has no parts to select; "
                        f"name it {where!r}")
            else:
                what = f"{subject} is a {describe(value)} and has no part {format_path((key,))}"
            available = listing(output, module_name)
            raise LayerError(f"layer {name!r}: {what}" + (f"; the parts of the output of {module_name!r} are: "
                                                          f"{available}" if available else ""))
        value = part
    return value


def replaced(value: object, path: Path, new: torch.Tensor) -> object:
    """A copy of ``value`` with the part at ``path`` replaced by ``new``: the same types at every level."""
    if not path:
        return new
    key, rest = path[0], path[1:]
    if isinstance(value, Mapping):
        inner = replaced(value[key], rest, new)
        if type(value) is dict:
            return {**value, key: inner}
        copied = copy.copy(value)  # OrderedDict, Hugging Face ModelOutput (a dataclass and a dict): same type
        copied[key] = inner  # type: ignore[index]
        return copied
    assert isinstance(value, (tuple, list)) and isinstance(key, int)
    items = list(value)
    items[key] = replaced(items[key], rest, new)
    if type(value) in (tuple, list):
        return type(value)(items)
    if hasattr(value, "_make"):  # a named tuple
        return value._make(items)
    return type(value)(items)  # a tuple or list subclass (torch.return_types): built from a sequence

"""Content fingerprints and store keys: what identifies a model, a set of examples, a value.

Everything the engine stores is found again by a key made of content hashes
(of the model's code and weights, of the examples' bytes) and settings, never
of names or object identities, so a renamed folder or a rebuilt model reuses
its values and an edited one does not.  The key strings are how entries on
disk are found again: they must stay byte for byte what they are, or every
cached value is orphaned.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import types
from typing import Any

import numpy as np
import torch

from pytest_tcav.engine.outputs import NextToken, Target

KEY_VERSION = "pytest-tcav-store-1"


def make_key(kind: str, parts: dict[str, Any]) -> str:
    """A stable hexadecimal key from JSON-serialisable parts."""
    from pytest_tcav._version import __version__

    payload = json.dumps(
        {"kind": kind, "version": __version__, "format": KEY_VERSION, **parts},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def pair_seed(seed: int, first: str, second: str) -> int:
    """The seed of one CAV: depends on the two sets' contents, not on names or order of calls."""
    digest = hashlib.sha256(f"{seed}:{first}:{second}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def target_key(target: Target) -> str:
    if isinstance(target, NextToken):
        return target.key  # content: the same in every process
    if callable(target):
        # A callable has no content to hash; its identity keeps values from leaking
        # between different callables, and keeps them out of other processes.
        name = getattr(target, "__qualname__", type(target).__qualname__)
        return f"callable:{getattr(target, '__module__', '?')}.{name}@{id(target)}"
    return f"class:{int(target)}"


def target_shared(target: Target) -> bool:
    """Whether other processes may share values computed for ``target`` (its key is its content)."""
    return isinstance(target, NextToken) or not callable(target)


def fingerprint_tensor(tensor: torch.Tensor) -> str:
    """A content hash of a tensor: shape, dtype and bytes."""
    t = tensor.detach().to("cpu").contiguous()
    h = hashlib.sha256()
    h.update(str(tuple(t.shape)).encode())
    h.update(str(t.dtype).encode())
    h.update(t.view(torch.uint8).numpy().data if t.numel() else b"")  # hashed in place, not copied
    return h.hexdigest()


def example_digests(examples: torch.Tensor) -> frozenset[bytes]:
    """The distinct examples of a set, as one content hash each, to find examples two sets share."""
    rows = examples.detach().to("cpu").contiguous().reshape(len(examples), -1)
    if rows.dtype == torch.bool:
        rows = rows.to(torch.uint8)
    data = rows.view(torch.uint8).numpy() if rows.shape[1] else np.zeros((len(examples), 0), np.uint8)
    return frozenset(_digest(row.data) for row in data)


def _digest(*chunks: Any) -> bytes:
    """An example's hash: SHA-256 (hardware-accelerated on most CPUs: twice BLAKE2b's speed here), 128 bits kept.

    Only compared within a process (no digest is stored), so the choice can change freely.
    """
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk)
    return h.digest()[:16]


def _row_bytes(tensor: torch.Tensor) -> np.ndarray:
    rows = tensor.detach().to("cpu").contiguous().reshape(len(tensor), -1)
    if rows.dtype == torch.bool:
        rows = rows.to(torch.uint8)
    return rows.view(torch.uint8).numpy() if rows.shape[1] else np.zeros((len(tensor), 0), np.uint8)


def example_digests_of_parts(parts: list[torch.Tensor]) -> frozenset[bytes]:
    """One hash per distinct example of a structured set: every part's row, with its dtype and shape."""
    datas = [_row_bytes(t) for t in parts]
    headers = [f"{t.dtype}{tuple(t.shape[1:])}".encode() for t in parts]
    return frozenset(_digest(*(chunk for header, data in zip(headers, datas) for chunk in (header, data[k].data)))
                     for k in range(len(parts[0])))


def _code_text(code: types.CodeType) -> str:
    """Bytecode, names and constants, recursing into nested code (reprs of code objects hold addresses)."""
    consts = [_code_text(c) if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts]
    return f"{code.co_code.hex()}|{code.co_names!r}|{'|'.join(consts)}"


@functools.lru_cache(maxsize=512)
def _class_code(cls: type) -> str:
    """The bytecode of a module class's forward, and its source where Python can find it.

    An edited ``forward`` (a new skip connection between the same modules)
    changes what a layer computes without changing any weight.
    """
    parts = [f"{cls.__module__}.{cls.__qualname__}"]
    code = getattr(getattr(cls, "forward", None), "__code__", None)
    if code is not None:
        parts.append(_code_text(code))
    try:
        parts.append(inspect.getsource(cls))
    except (OSError, TypeError):
        pass
    return "\n".join(parts)


def model_fingerprint(model: torch.nn.Module) -> str:
    """A content hash of a model: its structure, code, parameters and buffers.

    Any change to a weight, a buffer (batch-norm statistics), the module tree
    or a module class's source gives a new fingerprint, so nothing computed for
    one model is served for another.
    """
    h = hashlib.sha256()
    h.update(type(model).__qualname__.encode())
    h.update(repr(model).encode())
    for cls in sorted({type(m) for m in model.modules()}, key=lambda c: (c.__module__, c.__qualname__)):
        h.update(_class_code(cls).encode())  # type: ignore[arg-type]  # classes hash; torch's stub says no
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        if t.numel():
            # reshape(-1): 0-dim buffers (batch norm's num_batches_tracked) cannot be viewed as bytes
            flat = t.reshape(-1)
            h.update(flat.view(torch.uint8).numpy().data if t.dtype != torch.bool else flat.numpy().data)
    return h.hexdigest()


def value_key(value: Any) -> tuple[str, bool]:
    """A key for a setting such as ``forward_kwargs`` or ``output``, and whether other processes may share it.

    Plain values (numbers, strings, ``None``, tensors by content, and lists,
    tuples and dicts of them) are keyed by content; anything else (a callable,
    an object) by identity, which means nothing in another process, so its
    values stay in memory.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return f"{type(value).__name__}:{value!r}", True
    if isinstance(value, torch.Tensor):
        return f"tensor:{fingerprint_tensor(value)}", True
    if isinstance(value, (list, tuple)):
        items = [value_key(v) for v in value]
        return f"{type(value).__name__}[{','.join(k for k, _ in items)}]", all(p for _, p in items)
    if isinstance(value, dict):
        entries = [(str(k), value_key(v)) for k, v in value.items()]
        entries.sort(key=lambda e: e[0])
        return "{" + ",".join(f"{k!r}:{v}" for k, (v, _) in entries) + "}", all(p for _, (_, p) in entries)
    name = getattr(value, "__qualname__", type(value).__qualname__)
    return f"object:{getattr(value, '__module__', '?')}.{name}@{id(value)}", False

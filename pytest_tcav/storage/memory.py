"""Where computed values live between uses: the engine asks, the store remembers.

The engine never caches by itself; it asks a store for a value under a key
that covers everything the value depends on (content fingerprints of the model
and the data, the settings, the library version), and passes a function that
computes it on a miss.  :class:`MemoryStore` keeps values for the life of the
object (a pytest session); the disk cache in :mod:`pytest_tcav.storage.disk` adds a
persistent layer behind it.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import types
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

import torch

Value = dict[str, torch.Tensor]
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


class Backend(Protocol):
    """A persistent layer behind the in-memory store (see :class:`pytest_tcav.storage.disk.DiskStore`)."""

    def fetch(self, kind: str, key: str, compute: Callable[[], Value]) -> Value: ...

    def contains(self, kind: str, key: str) -> bool: ...

    def fetch_many(self, kind: str, keys: list[str], compute_many: "ComputeMany") -> dict[str, Value]: ...


ComputeMany = Callable[[list[str]], dict[str, Value]]


class MemoryStore:
    """A dictionary of computed values, with counts of what was computed and reused.

    This is the store the engine talks to.  ``persist=False`` keeps a value out
    of the backend: used for values whose key cannot capture their content
    across processes (gradients of a callable target).
    """

    def __init__(self, backend: Backend | None = None) -> None:
        self._values: dict[tuple[str, str], Value] = {}
        self.backend = backend
        self.computed: Counter[str] = Counter()
        self.reused: Counter[str] = Counter()

    def fetch(self, kind: str, key: str, compute: Callable[[], Value], *, persist: bool = True) -> Value:
        slot = (kind, key)
        if slot in self._values:
            self.reused[kind] += 1
            return self._values[slot]

        def counted() -> Value:
            self.computed[kind] += 1
            return compute()

        if self.backend is not None and persist:
            value = self.backend.fetch(kind, key, counted)
        else:
            value = counted()
        self._values[slot] = value
        return value

    def fetch_many(self, kind: str, keys: list[str], compute_many: ComputeMany, *,
                   persist: bool = True) -> dict[str, Value]:
        """Values for many keys; all missing ones are computed by one call of ``compute_many``.

        With a backend that supports it, the backend locks the missing keys
        first, so concurrent workers never compute the same value twice.
        ``persist=False`` keeps the values out of the backend, as for :meth:`fetch`.
        """
        wanted = list(dict.fromkeys(keys))
        result: dict[str, Value] = {}
        for key in wanted:
            if (kind, key) in self._values:
                self.reused[kind] += 1
                result[key] = self._values[(kind, key)]
        missing = [key for key in wanted if key not in result]
        if missing:

            def counted(todo: list[str]) -> dict[str, Value]:
                self.computed[kind] += len(todo)
                values = compute_many(todo)
                absent = [key for key in todo if key not in values]
                if absent:
                    raise RuntimeError(f"compute_many returned no value for {len(absent)} key(s)")
                return values

            if self.backend is not None and persist:
                fetched = self.backend.fetch_many(kind, missing, counted)
            else:
                fetched = counted(missing)
            for key in missing:
                self._values[(kind, key)] = fetched[key]
                result[key] = fetched[key]
        return result

    def contains(self, kind: str, key: str) -> bool:
        if (kind, key) in self._values:
            return True
        contains = getattr(self.backend, "contains", None)
        return bool(contains(kind, key)) if contains is not None else False

    def clear(self) -> None:
        self._values.clear()


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
        h.update(_class_code(cls).encode())
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        if t.numel():
            # reshape(-1): 0-dim buffers (batch norm's num_batches_tracked) cannot be viewed as bytes
            flat = t.reshape(-1)
            h.update(flat.view(torch.uint8).numpy().tobytes() if t.dtype != torch.bool else flat.numpy().tobytes())
    return h.hexdigest()

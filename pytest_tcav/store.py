"""Where computed values live between uses: the engine asks, the store remembers.

The engine never caches by itself; it asks a store for a value under a key
that covers everything the value depends on (content fingerprints of the model
and the data, the settings, the library version), and passes a function that
computes it on a miss.  :class:`MemoryStore` keeps values for the life of the
object (a pytest session); the disk cache in :mod:`pytest_tcav.cache` adds a
persistent layer behind it.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

import torch

Value = dict[str, torch.Tensor]
KEY_VERSION = "pytest-tcav-store-1"


def make_key(kind: str, parts: dict[str, Any]) -> str:
    """A stable hexadecimal key from JSON-serialisable parts."""
    from . import __version__

    payload = json.dumps(
        {"kind": kind, "version": __version__, "format": KEY_VERSION, **parts},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


class Store(Protocol):
    def fetch(self, kind: str, key: str, compute: Callable[[], Value]) -> Value: ...


class MemoryStore:
    """A dictionary of computed values, with counts of what was computed and reused."""

    def __init__(self, backend: Store | None = None) -> None:
        self._values: dict[tuple[str, str], Value] = {}
        self.backend = backend
        self.computed: Counter[str] = Counter()
        self.reused: Counter[str] = Counter()

    def fetch(self, kind: str, key: str, compute: Callable[[], Value]) -> Value:
        slot = (kind, key)
        if slot in self._values:
            self.reused[kind] += 1
            return self._values[slot]

        def counted() -> Value:
            self.computed[kind] += 1
            return compute()

        value = self.backend.fetch(kind, key, counted) if self.backend is not None else counted()
        self._values[slot] = value
        return value

    def contains(self, kind: str, key: str) -> bool:
        if (kind, key) in self._values:
            return True
        contains = getattr(self.backend, "contains", None)
        return bool(contains(kind, key)) if contains is not None else False

    def clear(self) -> None:
        self._values.clear()


def model_fingerprint(model: torch.nn.Module) -> str:
    """A content hash of a model: its structure, parameters and buffers.

    Any change to a weight, a buffer (batch-norm statistics) or the module tree
    gives a new fingerprint, so nothing computed for one model is served for another.
    """
    h = hashlib.sha256()
    h.update(type(model).__qualname__.encode())
    h.update(repr(model).encode())
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

"""Where computed values live between uses: the engine asks, the store remembers.

The engine never caches by itself; it asks a store for a value under a key
that covers everything the value depends on (content fingerprints of the model
and the data, the settings, the library version: see
:mod:`pytest_tcav.engine.fingerprints`), and passes a function that
computes it on a miss.  :class:`MemoryStore` keeps values for the life of the
object (a pytest session); the disk cache in :mod:`pytest_tcav.storage.disk` adds a
persistent layer behind it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Protocol

import torch

Value = dict[str, torch.Tensor]


class Backend(Protocol):
    """A persistent layer behind the in-memory store (see :class:`pytest_tcav.storage.disk.DiskStore`)."""

    def fetch(self, kind: str, key: str, compute: Callable[[], Value]) -> Value: ...

    def contains(self, kind: str, key: str) -> bool: ...

    def fetch_many(self, kind: str, keys: list[str], compute_many: ComputeMany) -> dict[str, Value]: ...


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

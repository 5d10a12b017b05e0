"""Where computed values live between uses: the engine asks, the store remembers.

The engine never caches by itself; it asks a store for a value under a key
that covers everything the value depends on (content fingerprints of the model
and the data, the settings, the library version: see
:mod:`pytest_tcav.engine.fingerprints`), and passes a function that
computes it on a miss.  :class:`MemoryStore` keeps values for the life of the
object (a pytest session); the disk cache in :mod:`pytest_tcav.storage.disk` adds a
persistent layer behind it.

Memory: values that the disk cache holds can be read again, so with a
``max_bytes`` bound only the most recently used of them stay in memory (the
activations of fifty random sets at a wide layer are gigabytes; the disk, and the
operating system's page cache over it, hold them instead).  Values that exist
nowhere else stay until :meth:`MemoryStore.clear`: dropping them would mean
computing them again.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import torch

Value = dict[str, torch.Tensor]


class StoreBusy(Exception):
    """Raised by ``fetch_many(..., wait=False)`` when another process holds a lock the call needs.

    Nothing was computed or kept; the caller does other work and asks again
    (:func:`pytest_tcav.engine.schedule.run_units`).
    """


class Backend(Protocol):
    """A persistent layer behind the in-memory store (see :class:`pytest_tcav.storage.disk.DiskStore`)."""

    def fetch(self, kind: str, key: str, compute: Callable[[], Value]) -> Value: ...

    def contains(self, kind: str, key: str) -> bool: ...

    def fetch_many(self, kind: str, keys: list[str], compute_many: ComputeMany, *,
                   wait: bool = True) -> dict[str, Value]: ...

    def exists(self, kind: str, key: str) -> bool: ...


ComputeMany = Callable[[list[str]], dict[str, Value]]


class MemoryStore:
    """A dictionary of computed values, with counts of what was computed and reused.

    This is the store the engine talks to.  ``persist=False`` keeps a value out
    of the backend: used for values whose key cannot capture their content
    across processes (gradients of a callable target).  ``max_bytes`` bounds the
    memory held by values the backend persists (least recently used first out;
    ``None``: no bound); see the module's docstring.
    """

    def __init__(self, backend: Backend | None = None, *, max_bytes: int | None = None) -> None:
        if max_bytes is not None and max_bytes < 0:
            raise ValueError(f"max_bytes must be at least 0, got {max_bytes}")
        self._values: OrderedDict[tuple[str, str], Value] = OrderedDict()
        self._sizes: dict[tuple[str, str], int] = {}  # values the backend holds: may be dropped
        self._held_bytes = 0
        self.max_bytes = max_bytes
        self.backend = backend
        self.computed: Counter[str] = Counter()
        self.reused: Counter[str] = Counter()

    @property
    def held_bytes(self) -> int:
        """Bytes of the values kept that the backend could give again (what ``max_bytes`` bounds)."""
        return self._held_bytes

    def _recall(self, slot: tuple[str, str]) -> Value | None:
        value = self._values.get(slot)
        if value is not None:
            self._values.move_to_end(slot)
        return value

    def _keep(self, slot: tuple[str, str], value: Value, *, persisted: bool) -> None:
        """Remember ``value``; a persisted one only while the bound allows (the oldest go first).

        A persisted CAV is kept only where it fits without pushing anything
        out: the check that trains it reduces it to scores at once, while a
        set's activations are read again by every group of CAVs of its layer
        (a 20 x 30 check's 630 CAVs would otherwise push its activations out).
        """
        bound = self.max_bytes if persisted else None  # None: kept whatever its size
        size = 0 if bound is None else value_bytes(value)
        if bound is not None and slot[0] == "cav" and slot not in self._sizes and self._held_bytes + size > bound:
            return
        self._values[slot] = value
        self._values.move_to_end(slot)
        if bound is None:
            return
        self._held_bytes += size - self._sizes.get(slot, 0)
        self._sizes[slot] = size
        for old in list(self._sizes):
            if self._held_bytes <= bound:
                break
            self._held_bytes -= self._sizes.pop(old)
            del self._values[old]

    def _persisting(self, persist: bool) -> bool:
        """Whether a value fetched now is (or will be) held by the backend, so it may be dropped here."""
        return self.backend is not None and persist and bool(getattr(self.backend, "persisting", True))

    def fetch(self, kind: str, key: str, compute: Callable[[], Value], *, persist: bool = True) -> Value:
        slot = (kind, key)
        known = self._recall(slot)
        if known is not None:
            self.reused[kind] += 1
            return known

        def counted() -> Value:
            self.computed[kind] += 1
            return compute()

        if self.backend is not None and persist:
            value = self.backend.fetch(kind, key, counted)
        else:
            value = counted()
        self._keep(slot, value, persisted=self._persisting(persist))
        return value

    def fetch_many(self, kind: str, keys: list[str], compute_many: ComputeMany, *,
                   persist: bool = True, wait: bool = True) -> dict[str, Value]:
        """Values for many keys; all missing ones are computed by one call of ``compute_many``.

        With a backend that supports it, the backend locks the missing keys
        first, so concurrent workers never compute the same value twice.
        ``persist=False`` keeps the values out of the backend, as for :meth:`fetch`.
        ``wait=False`` raises :class:`StoreBusy` instead of waiting when another
        process holds one of those locks.
        """
        wanted = list(dict.fromkeys(keys))
        result: dict[str, Value] = {}
        for key in wanted:
            known = self._recall((kind, key))
            if known is not None:
                self.reused[kind] += 1
                result[key] = known
        missing = [key for key in wanted if key not in result]
        if missing:

            def counted(todo: list[str]) -> dict[str, Value]:
                values = compute_many(todo)  # may raise StoreBusy: then nothing was computed
                self.computed[kind] += len(todo)
                absent = [key for key in todo if key not in values]
                if absent:
                    raise RuntimeError(f"compute_many returned no value for {len(absent)} key(s)")
                return values

            if self.backend is not None and persist:
                fetched = (self.backend.fetch_many(kind, missing, counted) if wait
                           else self.backend.fetch_many(kind, missing, counted, wait=False))
            else:
                fetched = counted(missing)
            persisted = self._persisting(persist)
            for key in missing:
                self._keep((kind, key), fetched[key], persisted=persisted)
                result[key] = fetched[key]
        return result

    def exists(self, kind: str, key: str) -> bool:
        """Whether a value is probably at hand (here, or as an entry of the backend), without reading it.

        A hint for planning work (which activations a test will need), never
        a promise: the entry may turn out corrupt or be evicted before it is read.
        """
        if (kind, key) in self._values:
            return True
        exists = getattr(self.backend, "exists", None)
        return bool(exists(kind, key)) if exists is not None else False

    def contains(self, kind: str, key: str) -> bool:
        if (kind, key) in self._values:
            return True
        contains = getattr(self.backend, "contains", None)
        return bool(contains(kind, key)) if contains is not None else False

    def flush(self) -> None:
        """Wait for the backend's writes in flight (the disk cache writes entries in the background)."""
        _flush(self.backend)

    def clear(self) -> None:
        self._values.clear()
        self._sizes.clear()
        self._held_bytes = 0


@contextmanager
def flushed(store: Any) -> Iterator[None]:
    """Run a block, then wait for the store's writes in flight, so that they (and their warnings) end with it.

    A store without ``flush`` (a user's own) has none in flight.
    """
    try:
        yield
    finally:
        _flush(store)


def _flush(store: Any) -> None:
    flush = getattr(store, "flush", None)
    if flush is not None:
        flush()


def value_bytes(value: Value) -> int:
    """The bytes a value's tensors hold."""
    return sum(t.element_size() * t.nelement() for t in value.values())

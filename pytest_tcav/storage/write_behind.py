"""Cache entries written in the background while the engine computes the next value.

Writing an entry is hashing it, writing it and waiting for the device (fsync):
about 1.5 s of a 20 random sets x 30 images check on a ResNet-18, most of it
waiting, while the engine's next unit of work (a forward pass, a group of
CAVs) could run.  So :class:`~pytest_tcav.storage.disk.DiskStore` hands a
computed batch of entries to :class:`WriteBehind` and goes on.

What stays true:

* **Nobody reads half an entry, nobody computes it twice.**  Each entry's lock,
  taken before the value was computed, is released by the thread that wrote
  it, after the rename: another worker waiting on it reads the finished file;
  this process finds the value here (:meth:`WriteBehind.get`) until it is.
* **Bounded.**  One batch is in flight at a time (the next one waits for it),
  and a batch of more than ``max_bytes`` is written before the call returns,
  as before: values pending here are held in memory.
* **Errors are reported, later.**  A disk error or an oversized value comes
  back from :meth:`WriteBehind.settle` as the outcome of its entry, and the
  store warns then: at its next batch, or when the engine ends the test
  (``flush``), so a test's warnings stay with that test.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_tcav.storage.layout import writer_pool
from pytest_tcav.storage.memory import Value, value_bytes

#: A batch of entries larger than this is written before the store call returns (the values would be held
#: meanwhile): the activations of one set at three ResNet-18 layers (20 MB) and the largest CAV group of a
#: 20 x 30 check (48 MB) go in the background, a 16 x 16 group of 50 x 50 (100 MB) does not.
MAX_PENDING_BYTES = 64 * 2**20

#: Writes one entry and returns its size: ``write(kind, key, path, value)``.
Writer = Callable[[str, str, Path, Value], int]


@dataclass
class _Batch:
    pid: int
    kind: str
    values: dict[str, Value]
    futures: list[Future[int | BaseException]] = field(default_factory=list)


class WriteBehind:
    """The batch of entries being written, and its values until they are on disk."""

    def __init__(self, max_bytes: int = MAX_PENDING_BYTES) -> None:
        self.max_bytes = max_bytes
        self._batch: _Batch | None = None

    def get(self, kind: str, key: str) -> Value | None:
        """The value of an entry still being written (or written, not yet settled), else None."""
        batch = self._live()
        return batch.values.get(key) if batch is not None and batch.kind == kind else None

    def start(self, kind: str, items: list[tuple[str, Path, Value]], locks: list[Any], write: Writer) -> bool:
        """Write ``items`` in the background, each releasing its lock when done; False if the batch is too large.

        ``locks[i]`` is the held lock of ``items[i]``; after a True answer the
        locks belong to the writers (the caller must not release them).  The
        caller settles the previous batch first: one is in flight at a time.
        """
        if self._live() is not None:
            raise RuntimeError("settle the batch in flight before starting another")
        if sum(value_bytes(value) for _key, _path, value in items) > self.max_bytes:
            return False

        def task(item: tuple[str, Path, Value], lock: Any) -> int | BaseException:
            try:
                return _outcome(write, kind, item)
            finally:
                with suppress(OSError):
                    lock.release()

        pool = writer_pool()
        batch = _Batch(os.getpid(), kind, {key: value for key, _path, value in items})
        try:
            for item, lock in zip(items, locks):
                batch.futures.append(pool.submit(task, item, lock))
        except RuntimeError:  # the interpreter is shutting down: no new threads; write the rest now
            for item, lock in list(zip(items, locks))[len(batch.futures):]:
                done: Future[int | BaseException] = Future()
                done.set_result(task(item, lock))
                batch.futures.append(done)
        self._batch = batch
        return True

    def settle(self) -> tuple[str, list[int | BaseException]]:
        """Wait for the batch in flight; its kind and each entry's outcome (size written, or the error)."""
        batch = self._live()
        self._batch = None
        if batch is None:
            return "", []
        return batch.kind, [future.result() for future in batch.futures]

    def _live(self) -> _Batch | None:
        """The batch in flight, unless it was started by the parent of this (forked) process: that one writes it."""
        if self._batch is not None and self._batch.pid != os.getpid():
            self._batch = None
        return self._batch


def write_in_threads(kind: str, items: list[tuple[str, Path, Value]], write: Writer) -> list[int | BaseException]:
    """Write entries now, in the writer threads (one entry in this thread); each one's size or error.

    Hashing and file writes release the GIL, and concurrent fsyncs share one
    journal commit on common file systems (about ten times faster than one
    fsync after another for hundreds of CAVs).
    """
    if len(items) == 1:
        return [_outcome(write, kind, items[0])]
    return list(writer_pool().map(lambda item: _outcome(write, kind, item), items))


def _outcome(write: Writer, kind: str, item: tuple[str, Path, Value]) -> int | BaseException:
    try:
        return write(kind, *item)
    except BaseException as exc:  # handed back to the store's thread, which reports or raises it
        return exc

"""Entries written in the background: read back at once, locked until written, errors reported at flush.

The writer is held on an event here, so each test sees the store while an
entry is in flight: its own store answers from memory, another store (another
worker's, in effect) finds the entry's lock held, and once the writer lets go
the file is whole and the lock free.
"""

from __future__ import annotations

import errno
import os
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from pytest_tcav import TCAV, MemoryStore
from pytest_tcav.storage import layout, write_behind
from pytest_tcav.storage.disk import DiskStore
from pytest_tcav.storage.memory import StoreBusy
from tests.helpers.synthetic import SmallCNN, noise, stripes
from tests.storage.test_disk import cache_warnings, files, key

KEYS = [key(f"behind-{n}") for n in range(3)]


def values(offset: float = 0.0) -> Any:
    return lambda todo: {k: {"v": torch.full((64,), offset + i)} for i, k in enumerate(todo)}


@pytest.fixture
def held_writes(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Writers wait for this event before writing (set it to let them go)."""
    go = threading.Event()
    original = layout.write_atomically

    def slow(*args: Any, **kwargs: Any) -> int:
        assert go.wait(30), "the test never let the writers go"
        return original(*args, **kwargs)

    monkeypatch.setattr(layout, "write_atomically", slow)
    return go


def test_values_in_flight_are_served_locked_and_then_on_disk(tmp_path: Path, held_writes: threading.Event) -> None:
    store = DiskStore(tmp_path)
    got = store.fetch_many("activations", KEYS, values())
    assert files(tmp_path, "*.tcav") == []  # returned before any entry was written
    # this store answers from the values in flight, without computing again
    again = store.fetch_many("activations", KEYS, lambda todo: pytest.fail(f"computed {todo} again"))
    assert all(again[k] is got[k] for k in KEYS)
    assert store.exists("activations", KEYS[0]) and store.contains("activations", KEYS[1])
    assert store.fetch("activations", KEYS[2], lambda: pytest.fail("computed again")) is got[KEYS[2]]
    # another store (another worker) finds the entries' locks held: busy, or a wait for the finished file
    other = DiskStore(tmp_path)
    with pytest.raises(StoreBusy):
        other.fetch_many("activations", KEYS[:1], values(10.0), wait=False)
    threading.Timer(0.2, held_writes.set).start()
    waited = other.fetch_many("activations", KEYS, lambda todo: pytest.fail(f"{todo} computed twice"))
    assert [float(waited[k]["v"][0]) for k in KEYS] == [0.0, 1.0, 2.0]
    store.flush()
    assert len(files(tmp_path, "*.tcav")) == 3 and store.stats.writes["activations"] == 3
    assert store.stats.misses["activations"] == 3 and other.stats.hits["activations"] == 3


def test_locks_are_free_once_written(tmp_path: Path) -> None:
    store = DiskStore(tmp_path)
    store.fetch_many("activations", KEYS, values())
    store.flush()
    lock = layout.lock_path(store.path("activations", KEYS[0]))
    from filelock import FileLock

    with FileLock(str(lock)).acquire(timeout=0):  # released by the writer thread that took it over
        pass


def test_write_errors_are_reported_at_flush(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            held_writes: threading.Event) -> None:
    store = DiskStore(tmp_path)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        got = store.fetch_many("cav", KEYS, values())
        assert cache_warnings(record) == [] and store.persisting  # not known yet
        monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
        held_writes.set()
        store.flush()
    assert len(cache_warnings(record)) == 1 and "the disk is full" in cache_warnings(record)[0]
    assert not store.persisting and store.stats.write_errors >= 1 and store.stats.writes["cav"] == 0
    assert files(tmp_path, "*.tcav") == [] and files(tmp_path, "*.tmp") == []
    assert [float(got[k]["v"][0]) for k in KEYS] == [0.0, 1.0, 2.0]  # the values themselves were never at risk


def test_one_batch_in_flight_and_large_batches_written_before_returning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = DiskStore(tmp_path)
    store.fetch_many("activations", KEYS[:1], values())
    store.fetch_many("activations", KEYS[1:2], values())  # waits for the first batch before starting its own
    assert len(files(tmp_path, "*.tcav")) >= 1 and store.stats.writes["activations"] == 1
    monkeypatch.setattr(store._behind, "max_bytes", 100)  # two values of 256 bytes: too large to hold back
    store.fetch_many("activations", KEYS[2:] + [key("large")], values())
    assert store._behind.get("activations", KEYS[2]) is None
    assert store.path("activations", KEYS[2]).is_file() and store.path("activations", key("large")).is_file()
    store.flush()
    assert store.stats.writes["activations"] == 4 and len(files(tmp_path, "*.tcav")) == 4


def test_a_forked_child_leaves_the_parents_batch_to_the_parent(tmp_path: Path, held_writes: threading.Event) -> None:
    behind = write_behind.WriteBehind()
    store = DiskStore(tmp_path)
    store.fetch_many("activations", KEYS, values())
    behind, store._behind = store._behind, behind  # look at the batch as a forked child would
    assert behind._batch is not None
    behind._batch.pid = os.getpid() + 1
    assert behind.get("activations", KEYS[0]) is None and behind.settle() == ("", [])
    held_writes.set()
    store.flush()  # the store's new (empty) tracker: nothing to wait for


def test_the_engine_flushes_before_a_test_returns(tmp_path: Path) -> None:
    store = MemoryStore(backend=DiskStore(tmp_path))
    engine = TCAV(SmallCNN().eval(), store=store, seed=0)
    gen = torch.Generator().manual_seed(0)
    engine.test(stripes(8, gen), target=1, inputs=noise(6, gen), layers=["conv1"],
                random_sets=[noise(8, gen) for _ in range(3)])
    disk = store.backend
    assert isinstance(disk, DiskStore) and disk._behind.get("cav", "0" * 64) is None
    assert disk._behind._batch is None  # nothing in flight once test() returned
    assert len(files(tmp_path, "*.tcav")) == sum(disk.stats.writes.values()) > 0

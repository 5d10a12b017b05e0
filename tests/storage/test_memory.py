"""The memory store's bound, and fetching without waiting on another process's lock."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pytest_tcav.config import TCAVConfig, build_config
from pytest_tcav.engine.fingerprints import make_key
from pytest_tcav.session.session import default_store
from pytest_tcav.storage import layout
from pytest_tcav.storage.disk import DiskStore
from pytest_tcav.storage.memory import MemoryStore, StoreBusy

KIB = torch.zeros(256)  # 1 KiB of float32


def key(n: int) -> str:
    return make_key("activations", {"budget-test": n})


def value(n: int) -> dict[str, torch.Tensor]:
    return {"activations": KIB + n}


def test_values_the_disk_holds_stay_within_the_bound(tmp_path: Path) -> None:
    store = MemoryStore(backend=DiskStore(tmp_path), max_bytes=3 * 1024)
    for n in range(6):
        store.fetch("activations", key(n), lambda n=n: value(n))
    assert store.held_bytes == 3 * 1024 and store.computed["activations"] == 6
    # the oldest went back to the disk: read again, not computed again, and the same values
    again = store.fetch_many("activations", [key(n) for n in range(6)], lambda todo: pytest.fail("recomputed"))
    assert all(torch.equal(again[key(n)]["activations"], value(n)["activations"]) for n in range(6))
    assert store.computed["activations"] == 6 and store.backend.stats.hits["activations"] == 3
    assert store.held_bytes <= 3 * 1024


def test_a_cav_is_kept_only_where_it_fits_without_pushing_activations_out(tmp_path: Path) -> None:
    store = MemoryStore(backend=DiskStore(tmp_path), max_bytes=3 * 1024)
    for n in range(2):
        store.fetch("activations", key(n), lambda n=n: value(n))
    cav = [make_key("cav", {"budget-test": n}) for n in range(2)]
    store.fetch("cav", cav[0], lambda: {"weights": KIB})  # fits: kept
    store.fetch("cav", cav[1], lambda: {"weights": KIB + 1})  # would push an activation out: not kept
    assert store.held_bytes == 3 * 1024
    assert ("activations", key(0)) in store._values and ("cav", cav[0]) in store._values
    assert ("cav", cav[1]) not in store._values
    # still at hand from the disk, never computed again
    again = store.fetch("cav", cav[1], lambda: pytest.fail("recomputed"))
    assert torch.equal(again["weights"], KIB + 1)


def test_values_that_exist_nowhere_else_are_kept(tmp_path: Path) -> None:
    alone = MemoryStore(max_bytes=1024)
    reading = MemoryStore(backend=DiskStore(tmp_path, mode="read"), max_bytes=1024)
    writing = MemoryStore(backend=DiskStore(tmp_path / "w"), max_bytes=1024)
    for n in range(4):
        for store in (alone, reading):
            store.fetch("activations", key(n), lambda n=n: value(n))
        writing.fetch("activations", key(n), lambda n=n: value(n), persist=False)
    for store in (alone, reading, writing):
        assert store.held_bytes == 0
        assert all(store.contains("activations", key(n)) for n in range(4))
        store.fetch("activations", key(0), lambda: pytest.fail("dropped a value that exists nowhere else"))


def test_the_bound_is_an_ini_setting(tmp_path: Path) -> None:
    assert TCAVConfig().memory_cache == 256 * 1024**2
    assert default_store(TCAVConfig(cache_dir=tmp_path)).max_bytes == 256 * 1024**2
    config = build_config({"tcav_memory_cache": ("1GiB", "tcav_memory_cache in pytest.ini")}, root=tmp_path)
    assert config.memory_cache == 1024**3
    assert build_config({"tcav_memory_cache": ("none", "x")}, root=tmp_path).memory_cache is None
    with pytest.raises(Exception, match="tcav_memory_cache in pytest.ini: cannot read cache size 'lots'"):
        build_config({"tcav_memory_cache": ("lots", "tcav_memory_cache in pytest.ini")}, root=tmp_path)


HOLD = """
import sys
from filelock import FileLock
lock = FileLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
sys.stdin.read()
"""


def test_a_lock_held_elsewhere_makes_the_fetch_busy_not_wait(tmp_path: Path) -> None:
    disk = DiskStore(tmp_path)
    store = MemoryStore(backend=disk)
    keys = [key(1), key(2)]
    lock_file = layout.lock_path(disk.path("activations", key(2)), "fcntl")
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock_file)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreBusy, match="being computed by another process"):
            store.fetch_many("activations", keys, lambda todo: {k: value(1) for k in todo}, wait=False)
        assert store.computed["activations"] == 0 and not store.exists("activations", key(1))
    finally:
        holder.communicate("")
    values = store.fetch_many("activations", keys, lambda todo: {k: value(7) for k in todo}, wait=False)
    assert set(values) == set(keys) and store.computed["activations"] == 2
    assert store.exists("activations", key(1)) and disk.exists("activations", key(2))
    store.flush()  # the entries were written in the background
    fresh = MemoryStore(backend=DiskStore(tmp_path))
    assert fresh.exists("activations", key(1)) and not fresh.exists("activations", key(3))

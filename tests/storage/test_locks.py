"""The disk cache's lock kinds: fcntl (the default) and soft lock files for network file systems."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch
from filelock import FileLock, SoftFileLock

from pytest_tcav.config import TCAVConfig, build_config
from pytest_tcav.engine.fingerprints import make_key
from pytest_tcav.errors import ConfigurationError, TCAVCacheWarning
from pytest_tcav.storage import layout
from pytest_tcav.storage.disk import DiskStore
from pytest_tcav.storage.locks import new_lock


def key(n: int | str) -> str:
    return make_key("activations", {"lock-test": n})


def value() -> dict[str, torch.Tensor]:
    return {"a": torch.arange(12.0).reshape(3, 4)}


def test_lock_kinds() -> None:
    assert isinstance(new_lock("/tmp/x.lock"), FileLock)
    assert isinstance(new_lock("/tmp/x.lock", "soft"), SoftFileLock)
    with pytest.raises(ValueError, match="cache lock must be one of"):
        new_lock("/tmp/x.lock", "nfs")
    with pytest.raises(ConfigurationError, match="lock must be one of"):
        DiskStore("/tmp/nowhere", lock="nfs")


def test_the_setting_reaches_the_sessions_store(tmp_path: Path) -> None:
    from pytest_tcav.session.session import default_store

    assert TCAVConfig().cache_lock == "fcntl"
    config = build_config({"tcav_cache_lock": ("soft", "tcav_cache_lock in pytest.ini"),
                           "tcav_cache_dir": (tmp_path, "x")}, root=tmp_path)
    assert config.cache_lock == "soft"
    assert default_store(config).backend.lock == "soft"  # type: ignore[union-attr]
    with pytest.raises(ConfigurationError, match="tcav_cache_lock in pytest.ini must be one of fcntl, soft"):
        build_config({"tcav_cache_lock": ("nfs", "tcav_cache_lock in pytest.ini")}, root=tmp_path)


def test_soft_locks_store_and_serve_entries_and_leave_no_lock_files(tmp_path: Path) -> None:
    store = DiskStore(tmp_path, lock="soft")
    store.fetch("activations", key(0), value)
    many = store.fetch_many("activations", [key(1), key(2)], lambda keys: {k: value() for k in keys})
    assert set(many) == {key(1), key(2)}
    again = DiskStore(tmp_path, lock="soft")
    fetched = again.fetch("activations", key(2), lambda: pytest.fail("computed"))  # type: ignore[arg-type]
    assert torch.equal(fetched["a"], value()["a"])
    assert not [p for p, _ in layout.entry_files(tmp_path) if p.suffix in (layout.LOCK_SUFFIX, layout.SOFT_LOCK_SUFFIX)]


def test_a_held_soft_lock_makes_another_worker_wait_then_compute(tmp_path: Path) -> None:
    store = DiskStore(tmp_path, lock="soft", lock_timeout=0.3)
    path = store.path("activations", key(0))
    path.parent.mkdir(parents=True)
    held = SoftFileLock(str(layout.lock_path(path, "soft")))
    held.acquire()
    try:
        start = time.perf_counter()
        with pytest.warns(TCAVCacheWarning, match="waited 0.3 s"):
            store.fetch("activations", key(0), value)
        assert time.perf_counter() - start >= 0.3
    finally:
        held.release()
    assert path.exists()


def test_eviction_with_soft_locks_skips_entries_being_written(tmp_path: Path) -> None:
    store = DiskStore(tmp_path, lock="soft", max_bytes=None)
    for n in range(3):
        store.fetch("activations", key(n), value)
        os.utime(store.path("activations", key(n)), (1000 + n, 1000 + n))
    size = layout.size_bytes(tmp_path)
    held = SoftFileLock(str(layout.lock_path(store.path("activations", key(0)), "soft")))  # the oldest, being written
    held.acquire()
    try:
        assert store.evict(max_bytes=size // 2) >= 1
    finally:
        held.release()
    assert store.path("activations", key(0)).exists() and not store.path("activations", key(1)).exists()


def test_a_folder_used_with_fcntl_locks_works_with_soft_locks(tmp_path: Path) -> None:
    """fcntl locks leave empty .lock files, which a soft lock would take for a holder: soft locks use .slock."""
    DiskStore(tmp_path).fetch("activations", key(0), value)
    path = DiskStore(tmp_path).path("activations", key(1))
    path.parent.mkdir(parents=True, exist_ok=True)
    layout.lock_path(path).write_text("")  # as an fcntl lock leaves it
    store = DiskStore(tmp_path, lock="soft", lock_timeout=5)
    start = time.perf_counter()
    store.fetch("activations", key(1), value)
    assert time.perf_counter() - start < 4
    assert layout.lock_path(path, "soft").suffix == ".slock"
    assert DiskStore(tmp_path).clear() == 2  # .slock files follow the layout too

"""The disk cache: format, safety under corruption and disk errors, concurrency, bounds, and never-stale keys.

The never-stale tests run the real engine on a tiny untrained CNN: every input
a value depends on is changed in turn and must give a miss and new numbers,
while an unchanged run in a new engine and a new store must compute nothing
and give bit-identical results.
"""

from __future__ import annotations

import copy
import dataclasses
import errno
import hashlib
import json
import multiprocessing
import os
import random
import struct
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from pytest_tcav import TCAV, HingeSGDTrainer, MemoryStore
from pytest_tcav.config import DEFAULT_MAX_BYTES, parse_size
from pytest_tcav.engine.fingerprints import make_key
from pytest_tcav.errors import ConfigurationError, TCAVCacheWarning
from pytest_tcav.storage.disk import DiskStore
from pytest_tcav.storage.entry_format import MAGIC, environment_fingerprint
from tests.helpers.synthetic import SmallCNN, noise, stripes

KEY = make_key("activations", {"test": "one"})


def key(n: int | str) -> str:
    return make_key("activations", {"test": n})


class Counting:
    """A compute function that counts its calls and returns a fixed value."""

    def __init__(self, value: dict[str, torch.Tensor] | None = None) -> None:
        self.value = value if value is not None else {"v": torch.arange(250, dtype=torch.float32)}
        self.calls = 0

    def __call__(self) -> dict[str, torch.Tensor]:
        self.calls += 1
        return self.value


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a
    )


def files(root: Path, pattern: str = "*") -> list[Path]:
    return sorted(p for p in root.rglob(pattern) if p.is_file())


def cache_warnings(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, TCAVCacheWarning)]


# -- format -----------------------------------------------------------------------------------


def test_round_trip_is_bit_identical_for_every_dtype_and_shape(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    value = {
        "float32": torch.randn(3, 5, generator=gen),
        "float64": torch.randn(7, generator=gen, dtype=torch.float64),
        "float16": torch.randn(4, 2, generator=gen).half(),
        "bfloat16": torch.randn(9, generator=gen).bfloat16(),
        "scalar": torch.tensor(0.125, dtype=torch.float64),
        "empty": torch.empty(0, 3),
        "int64": torch.arange(-5, 5),
        "uint8": torch.arange(256, dtype=torch.int64).to(torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "complex": torch.randn(2, 2, dtype=torch.complex64, generator=gen),
        "transposed": torch.randn(4, 6, generator=gen).t(),  # not contiguous
        "special": torch.tensor([float("nan"), float("inf"), -0.0]),
        "grad": torch.randn(3, generator=gen, requires_grad=True),
    }
    compute = Counting(value)
    DiskStore(tmp_path).fetch("activations", KEY, compute)
    loaded = DiskStore(tmp_path).fetch("activations", KEY, compute)
    assert compute.calls == 1
    assert list(loaded) == list(value)
    for name, tensor in value.items():
        got = loaded[name]
        assert got.dtype == tensor.dtype and got.shape == tensor.shape, name
        assert got.detach().reshape(-1).view(torch.uint8).tolist() == \
            tensor.detach().contiguous().reshape(-1).view(torch.uint8).tolist() if tensor.numel() else True, name
        assert not got.requires_grad


def test_layout_follows_kind_and_key_only(tmp_path: Path) -> None:
    store = DiskStore(tmp_path)
    store.fetch("cav", KEY, Counting())
    assert store.path("cav", KEY) == tmp_path / "cav" / KEY[:2] / f"{KEY}.tcav"
    assert store.path("cav", KEY).is_file()
    assert (tmp_path / "CACHEDIR.TAG").read_text().startswith("Signature: 8a477f597d28d172789f06886806bc55")
    assert files(tmp_path, "*.tmp") == []


@pytest.mark.parametrize("bad_key", ["../../etc/passwd", KEY.upper(), KEY[:10], KEY + "/x", "", "g" * 64])
def test_keys_that_are_not_lowercase_hex_are_refused(tmp_path: Path, bad_key: str) -> None:
    with pytest.raises(ValueError, match="hexadecimal"):
        DiskStore(tmp_path).fetch("cav", bad_key, Counting())
    assert not tmp_path.joinpath("cav").exists()


@pytest.mark.parametrize("bad_kind", ["../x", "Cav", "", "a/b", ".hidden", "x" * 40])
def test_kinds_that_are_not_plain_names_are_refused(tmp_path: Path, bad_kind: str) -> None:
    with pytest.raises(ValueError, match="kind"):
        DiskStore(tmp_path).fetch(bad_kind, KEY, Counting())


def test_values_that_are_not_dicts_of_tensors_are_refused_without_leaving_files(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        DiskStore(tmp_path).fetch("cav", KEY, lambda: {"x": [1, 2]})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        DiskStore(tmp_path).fetch("cav", KEY, lambda: {"x": torch.zeros(2, dtype=torch.int8).to_sparse()})
    assert files(tmp_path, "*.tcav") == [] and files(tmp_path, "*.tmp") == []


def test_options_are_validated() -> None:
    with pytest.raises(ConfigurationError, match="mode"):
        DiskStore("x", mode="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="max_bytes"):
        DiskStore("x", max_bytes=-3)
    with pytest.raises(ConfigurationError, match="lock_timeout"):
        DiskStore("x", lock_timeout=float("inf"))
    assert DiskStore("x").max_bytes == DEFAULT_MAX_BYTES == 8 * 1024**3


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2GiB", 2 * 1024**3), ("500MB", 500 * 1000**2), ("1.5g", int(1.5 * 1024**3)), ("1048576", 1048576),
     ("10 KiB", 10240), ("none", None), ("0", None), (None, None), (4096, 4096)],
)
def test_parse_size(text: Any, expected: int | None) -> None:
    assert parse_size(text) == expected


def test_parse_size_rejects_nonsense() -> None:
    with pytest.raises(ConfigurationError, match="cache size"):
        parse_size("lots")


# -- corruption -------------------------------------------------------------------------------


def _rehashed(data: bytes) -> bytes:
    """``data`` with a valid checksum: what a deliberate forgery (not an accident) looks like."""
    body = data[:-32]
    return body + hashlib.sha256(body).digest()


def _forge_header(data: bytes, change: Any) -> bytes:
    """Rewrite the JSON header of a valid entry, keeping lengths and a valid checksum."""
    prefix = struct.calcsize("<8sIQ")
    _, version, header_len = struct.unpack_from("<8sIQ", data)
    header = json.loads(data[prefix:prefix + header_len])
    change(header)
    text = json.dumps(header).encode()
    assert len(text) <= header_len, "forged header must fit in the original"
    text += b" " * (header_len - len(text))
    return _rehashed(data[:prefix] + text + data[prefix + header_len:])


def _set(path: list[Any], value: Any) -> Any:
    def change(header: dict[str, Any]) -> None:
        target: Any = header
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value
    return change


class Explodes:
    """Unpickling this runs code; the cache must never do that."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


def _pickle_bomb(tmp_path: Path) -> bytes:
    target = tmp_path / "pickle.pt"
    torch.save({"v": Explodes(str(tmp_path / "EXECUTED"))}, target)
    return target.read_bytes()


CORRUPTIONS = {
    "empty": lambda d, p: b"",
    "truncated_to_prefix": lambda d, p: d[:10],
    "truncated_half": lambda d, p: d[: len(d) // 2],
    "truncated_by_one": lambda d, p: d[:-1],
    "extra_byte": lambda d, p: d + b"\0",
    "flip_magic": lambda d, p: bytes([d[0] ^ 1]) + d[1:],
    "flip_header": lambda d, p: d[:30] + bytes([d[30] ^ 0x20]) + d[31:],
    "flip_payload": lambda d, p: d[:-100] + bytes([d[-100] ^ 0x01]) + d[-99:],
    "flip_checksum": lambda d, p: d[:-1] + bytes([d[-1] ^ 0x80]),
    "zeros": lambda d, p: b"\0" * len(d),
    "pickle": lambda d, p: _pickle_bomb(p),
    "other_key": lambda d, p: _forge_header(d, _set(["key"], key("someone else"))),
    "bad_dtype": lambda d, p: _forge_header(d, _set(["tensors", 0, "dtype"], "object")),
    "bad_shape": lambda d, p: _forge_header(d, _set(["tensors", 0, "shape"], [251])),
    "negative_shape": lambda d, p: _forge_header(d, _set(["tensors", 0, "shape"], [-250])),
    "bad_offset": lambda d, p: _forge_header(d, _set(["tensors", 0, "offset"], 64)),
    "no_tensors": lambda d, p: _forge_header(d, _set(["tensors"], [])),
    "header_not_object": lambda d, p: _forge_header(d, lambda h: h.clear()),
    "bad_header_length": lambda d, p: _rehashed(d[:12] + struct.pack("<Q", 10**9) + d[20:]),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_corrupt_entry_is_reported_once_removed_and_recomputed(tmp_path: Path, corruption: str) -> None:
    root = tmp_path / "cache"
    compute = Counting()
    DiskStore(root).fetch("activations", KEY, compute)
    path = DiskStore(root).path("activations", KEY)
    path.write_bytes(CORRUPTIONS[corruption](path.read_bytes(), tmp_path))

    store = DiskStore(root)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert store.contains("activations", KEY) is False
        value = store.fetch("activations", KEY, compute)
        again = store.fetch("activations", KEY, compute)
    assert same(value, compute.value) and same(again, compute.value)
    messages = cache_warnings(record)
    assert len(messages) == 1, messages
    assert "corrupt cache entry" in messages[0] and str(path) in messages[0]
    assert compute.calls == 2  # the first write, and one recomputation
    assert store.stats.corrupt["activations"] == 1
    assert not (tmp_path / "EXECUTED").exists(), "loading ran code from the file"
    # The entry was rewritten soundly: a new store reads it without complaint.
    with warnings.catch_warnings():
        warnings.simplefilter("error", TCAVCacheWarning)
        assert same(DiskStore(root).fetch("activations", KEY, compute), compute.value)
    assert compute.calls == 2


def test_random_byte_flips_are_always_detected(tmp_path: Path) -> None:
    compute = Counting({"a": torch.randn(17, 3), "b": torch.tensor([1, 2, 3])})
    DiskStore(tmp_path).fetch("cav", KEY, compute)
    path = DiskStore(tmp_path).path("cav", KEY)
    good = path.read_bytes()
    rng = random.Random(0)
    for _ in range(40):
        data = bytearray(good)
        where = rng.randrange(len(data))
        data[where] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(data))
        with pytest.warns(TCAVCacheWarning, match="corrupt"):
            value = DiskStore(tmp_path).fetch("cav", KEY, compute)
        assert same(value, compute.value)
        assert path.read_bytes() == good  # recomputed and rewritten, byte for byte


def test_an_entry_this_store_wrote_or_checked_is_not_hashed_again(tmp_path: Path, monkeypatch) -> None:
    """Re-reading skips the checksum only for the very file already verified (or written) by this store."""
    from pytest_tcav.storage import entry_format

    hashed: list[int] = []
    real = hashlib.sha256

    def counting(data: Any = b"") -> Any:
        hashed.append(len(data))
        return real(data)

    compute = Counting()
    writer = DiskStore(tmp_path)
    writer.fetch("activations", KEY, compute)
    monkeypatch.setattr(entry_format.hashlib, "sha256", counting)
    assert same(writer.fetch("activations", KEY, compute), compute.value)
    assert hashed == []  # its own file, read back
    reader = DiskStore(tmp_path)
    reader.fetch("activations", KEY, compute)
    reader.fetch("activations", KEY, compute)
    assert len(hashed) == 1  # verified on its first read only
    # a file renamed into place (as every writer does) is another file: checked again, and found corrupt
    path = writer.path("activations", KEY)
    data = bytearray(path.read_bytes())
    data[-100] ^= 1
    replacement = tmp_path / "replacement"
    replacement.write_bytes(bytes(data))
    os.replace(replacement, path)
    with pytest.warns(TCAVCacheWarning, match="corrupt"):
        assert same(writer.fetch("activations", KEY, compute), compute.value)
    assert compute.calls == 2


def test_read_mode_reports_a_corrupt_entry_but_leaves_it(tmp_path: Path) -> None:
    compute = Counting()
    DiskStore(tmp_path).fetch("activations", KEY, compute)
    path = DiskStore(tmp_path).path("activations", KEY)
    path.write_bytes(path.read_bytes()[:-5])
    store = DiskStore(tmp_path, mode="read")
    with pytest.warns(TCAVCacheWarning, match="read-only mode keeps it"):
        assert same(store.fetch("activations", KEY, compute), compute.value)
    assert path.stat().st_size > 0 and compute.calls == 2


def test_entry_from_another_environment_is_a_silent_miss_and_is_replaced(tmp_path: Path) -> None:
    compute = Counting()
    old = DiskStore(tmp_path)
    old._environment = "0" * 64  # as if written by another torch or another pytest-tcav source
    old.fetch("activations", KEY, compute)
    store = DiskStore(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TCAVCacheWarning)
        assert same(store.fetch("activations", KEY, compute), compute.value)
    assert compute.calls == 2 and store.stats.stale["activations"] == 1
    assert DiskStore(tmp_path).fetch("activations", KEY, compute) and compute.calls == 2
    assert len(environment_fingerprint()) == 64


def test_another_format_version_is_a_miss(tmp_path: Path) -> None:
    compute = Counting()
    DiskStore(tmp_path).fetch("activations", KEY, compute)
    path = DiskStore(tmp_path).path("activations", KEY)
    data = path.read_bytes()
    path.write_bytes(_rehashed(MAGIC + struct.pack("<I", 99) + data[12:]))
    store = DiskStore(tmp_path)
    store.fetch("activations", KEY, compute)
    assert compute.calls == 2 and store.stats.stale["activations"] == 1


# -- modes ------------------------------------------------------------------------------------


def test_off_mode_never_touches_the_disk(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    store = DiskStore(root, mode="off")
    compute = Counting()
    store.fetch("activations", KEY, compute)
    store.fetch("activations", KEY, compute)
    assert compute.calls == 2 and not store.contains("activations", KEY)
    assert not root.exists()


def test_read_mode_uses_entries_but_never_writes(tmp_path: Path) -> None:
    compute = Counting()
    DiskStore(tmp_path).fetch("activations", key(1), compute)
    before = {p: p.stat().st_mtime_ns for p in files(tmp_path)}
    store = DiskStore(tmp_path, mode="read")
    assert store.contains("activations", key(1))
    assert same(store.fetch("activations", key(1), compute), compute.value)
    store.fetch("activations", key(2), compute)
    assert compute.calls == 2  # only the new key was computed
    assert not store.contains("activations", key(2)) and not store.persisting
    assert {p: p.stat().st_mtime_ns for p in files(tmp_path)} == before  # nothing written, nothing touched


def test_write_mode_always_recomputes_and_overwrites(tmp_path: Path) -> None:
    DiskStore(tmp_path).fetch("activations", KEY, Counting({"v": torch.zeros(3)}))
    store = DiskStore(tmp_path, mode="write")
    fresh = Counting({"v": torch.ones(3)})
    assert not store.contains("activations", KEY)
    assert same(store.fetch("activations", KEY, fresh), fresh.value)
    assert fresh.calls == 1
    assert same(DiskStore(tmp_path).fetch("activations", KEY, Counting()), fresh.value)


def test_readwrite_mode_computes_once_across_stores(tmp_path: Path) -> None:
    compute = Counting()
    for _ in range(3):
        assert same(DiskStore(tmp_path).fetch("activations", KEY, compute), compute.value)
    assert compute.calls == 1


def test_a_failing_computation_leaves_no_entry_and_no_held_lock(tmp_path: Path) -> None:
    store = DiskStore(tmp_path, lock_timeout=2.0)

    def broken() -> dict[str, torch.Tensor]:
        raise RuntimeError("model exploded")

    with pytest.raises(RuntimeError, match="exploded"):
        store.fetch("activations", KEY, broken)
    with pytest.raises(RuntimeError, match="exploded"):
        store.fetch_many("activations", [KEY], lambda missing: broken())  # type: ignore[arg-type, return-value]
    compute = Counting()
    started = time.monotonic()
    assert same(DiskStore(tmp_path, lock_timeout=2.0).fetch("activations", KEY, compute), compute.value)
    assert time.monotonic() - started < 1.0  # the lock was released, not waited out
    assert files(tmp_path, "*.tmp") == []


def test_contains_holds_the_value_until_fetch(tmp_path: Path) -> None:
    compute = Counting()
    DiskStore(tmp_path).fetch("cav", KEY, compute)
    store = DiskStore(tmp_path)
    assert store.contains("cav", KEY)
    store.path("cav", KEY).unlink()  # evicted by another worker in between
    assert same(store.fetch("cav", KEY, compute), compute.value)
    assert compute.calls == 1


def test_memory_store_in_front_asks_the_disk_once(tmp_path: Path) -> None:
    compute = Counting()
    DiskStore(tmp_path).fetch("cav", KEY, compute)
    disk = DiskStore(tmp_path)
    memory = MemoryStore(backend=disk)
    assert memory.contains("cav", KEY)
    for _ in range(3):
        memory.fetch("cav", KEY, compute)
    assert compute.calls == 1 and disk.stats.hits["cav"] == 1 and memory.computed["cav"] == 0


def test_clear_removes_entries_and_nothing_else(tmp_path: Path) -> None:
    store = DiskStore(tmp_path)
    for n in range(5):
        store.fetch("activations", key(n), Counting())
        store.fetch("cav", key(n), Counting())
    foreign = [tmp_path / "notes.txt", tmp_path / "cav" / "readme.md", tmp_path / "cav" / "zz" / "data.bin",
               tmp_path / "activations" / KEY[:2] / "keep.me"]
    for path in foreign:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("not ours")
    assert store.size_bytes() > 0
    assert store.clear() == 10
    assert store.size_bytes() == 0
    assert files(tmp_path, "*.tcav") == [] and files(tmp_path, "*.lock") == [tmp_path / "evict.lock"]
    assert all(p.read_text() == "not ours" for p in foreign)
    compute = Counting()
    store.fetch("activations", key(0), compute)
    assert compute.calls == 1


# -- disk errors -------------------------------------------------------------------------------


def _failing(error: int, original: Any, when: Any = lambda *a, **k: True) -> Any:
    def fail(*args: Any, **kwargs: Any) -> Any:
        if when(*args, **kwargs):
            raise OSError(error, os.strerror(error))
        return original(*args, **kwargs)
    return fail


@pytest.mark.parametrize(
    ("error", "function"),
    [(errno.ENOSPC, "replace"), (errno.EROFS, "replace"), (errno.ENOSPC, "fsync"),
     (errno.EROFS, "open"), (errno.EACCES, "open")],
)
def test_disk_errors_warn_once_and_leave_no_partial_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: int, function: str
) -> None:
    root = tmp_path / "cache"
    store = DiskStore(root)
    if function == "open":
        # Creating any file under the cache fails (a read-only or foreign-owned directory).
        original = os.open
        monkeypatch.setattr(os, "open", _failing(error, original,
                                                 lambda path, flags, *a, **k: str(path).startswith(str(root))
                                                 and bool(flags & os.O_CREAT)))
    else:
        monkeypatch.setattr(os, function, _failing(error, getattr(os, function)))
    computes = [Counting({"v": torch.full((300,), float(n))}) for n in range(3)]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for n, compute in enumerate(computes):
            assert same(store.fetch("activations", key(n), compute), compute.value)
            assert same(store.fetch("activations", key(n), compute), compute.value)
    monkeypatch.undo()
    messages = cache_warnings(record)
    assert len(messages) == 1, messages
    reason = {errno.ENOSPC: "the disk is full", errno.EROFS: "read-only", errno.EACCES: "permission denied"}[error]
    assert "cannot write to the TCAV cache" in messages[0] and reason in messages[0]
    assert [c.calls for c in computes] == [2, 2, 2]  # nothing persisted, nothing wrong
    assert not store.persisting and store.stats.write_errors == 1
    assert files(root, "*.tmp") == [] and files(root, "*.tcav") == []


def test_existing_entries_are_served_from_a_read_only_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    compute = Counting()
    DiskStore(tmp_path).fetch("activations", key(1), compute)
    store = DiskStore(tmp_path)
    original_open, original_utime = os.open, os.utime
    creating = lambda p, flags, *a, **k: bool(flags & os.O_CREAT)  # noqa: E731
    monkeypatch.setattr(os, "open", _failing(errno.EROFS, original_open, creating))
    monkeypatch.setattr(os, "utime", _failing(errno.EROFS, original_utime))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert same(store.fetch("activations", key(1), compute), compute.value)
        assert cache_warnings(record) == []
        store.fetch("activations", key(2), compute)
    assert compute.calls == 2
    assert len(cache_warnings(record)) == 1


def test_cache_dir_that_cannot_be_created_is_survived(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    store = DiskStore(blocker / "cache")
    compute = Counting()
    with pytest.warns(TCAVCacheWarning, match="cannot write"):
        assert same(store.fetch("activations", KEY, compute), compute.value)
    assert same(store.fetch("activations", KEY, compute), compute.value) and compute.calls == 2


# -- size bound -------------------------------------------------------------------------------


def _entry_size(tmp_path: Path) -> int:
    probe = DiskStore(tmp_path / "probe")
    probe.fetch("activations", KEY, Counting())
    return probe.path("activations", KEY).stat().st_size


def _age(store: DiskStore, ages: dict[str, float]) -> None:
    now = time.time()
    for k, seconds in ages.items():
        path = store.path("activations", k)
        os.utime(path, (now - seconds, now - seconds))


def test_least_recently_used_entries_are_evicted(tmp_path: Path) -> None:
    size = _entry_size(tmp_path)
    root = tmp_path / "cache"
    store = DiskStore(root, max_bytes=int(3.5 * size))
    a, b, c, d = key("a"), key("b"), key("c"), key("d")
    for k in (a, b, c):
        store.fetch("activations", k, Counting())
    _age(store, {a: 300, b: 200, c: 100})
    reader = DiskStore(root, max_bytes=int(3.5 * size))
    reader.fetch("activations", a, Counting())  # a hit makes `a` the most recently used
    writer = DiskStore(root, max_bytes=int(3.5 * size))
    writer.fetch("activations", d, Counting())
    present = {k for k in (a, b, c, d) if writer.path("activations", k).exists()}
    assert present == {a, c, d}
    assert not writer.path("activations", b).with_suffix(".lock").exists()
    assert writer.stats.evicted == 1 and writer.size_bytes() <= 3.5 * size


def test_eviction_skips_entries_being_written(tmp_path: Path) -> None:
    from filelock import FileLock

    size = _entry_size(tmp_path)
    store = DiskStore(tmp_path / "cache", max_bytes=int(3.5 * size))
    a, b, c, d = key("a"), key("b"), key("c"), key("d")
    for k in (a, b, c):
        store.fetch("activations", k, Counting())
    _age(store, {a: 300, b: 200, c: 100})
    held = FileLock(str(store.path("activations", a).with_suffix(".lock")))
    held.acquire()
    try:
        store.fetch("activations", d, Counting())  # over the bound: `a` is oldest but locked
    finally:
        held.release()
    present = {k for k in (a, b, c, d) if store.path("activations", k).exists()}
    assert present == {a, c, d}


def test_eviction_brings_a_full_cache_under_the_bound(tmp_path: Path) -> None:
    size = _entry_size(tmp_path)
    store = DiskStore(tmp_path / "cache", max_bytes=10 * size)
    for n in range(40):
        store.fetch("activations", key(n), Counting())
        assert store.size_bytes() <= 10 * size
    assert store.stats.evicted >= 30
    assert DiskStore(tmp_path / "cache", max_bytes=None).evict(max_bytes=2 * size) > 0
    assert store.size_bytes() <= 2 * size


def test_a_value_larger_than_the_bound_is_not_stored(tmp_path: Path) -> None:
    store = DiskStore(tmp_path, max_bytes=4096)
    compute = Counting({"v": torch.zeros(10_000)})
    with pytest.warns(TCAVCacheWarning, match="larger than the cache limit"):
        assert same(store.fetch("activations", KEY, compute), compute.value)
    assert files(tmp_path, "*.tcav") == [] and files(tmp_path, "*.tmp") == []
    small = Counting()
    store.fetch("activations", key(2), small)  # smaller values are still stored
    assert store.path("activations", key(2)).exists()


def test_leftover_temporary_files_are_cleaned(tmp_path: Path) -> None:
    store = DiskStore(tmp_path)
    store.fetch("activations", KEY, Counting())
    shard = store.path("activations", KEY).parent
    old, fresh = shard / f"{KEY}.123.abc.tmp", shard / f"{KEY}.456.def.tmp"
    old.write_bytes(b"partial")
    fresh.write_bytes(b"partial")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    store.evict()
    assert not old.exists() and fresh.exists()


# -- concurrency with real processes -----------------------------------------------------------


def _worker(root: str, keys: list[str], counter: str, barrier: Any, results: Any, batched: bool) -> None:
    store = DiskStore(root)

    def value_of(k: str) -> dict[str, torch.Tensor]:
        with open(counter, "a") as log:  # one short O_APPEND write per computation
            log.write(k + "\n")
        time.sleep(0.25)
        return {"v": torch.arange(64, dtype=torch.float64) + int(k[:6], 16)}

    barrier.wait()
    if batched:
        got = store.fetch_many("cav", keys, lambda missing: {k: value_of(k) for k in missing})
    else:
        got = {k: store.fetch("cav", k, lambda k=k: value_of(k)) for k in keys}
    results.put({k: v["v"].tolist() for k, v in got.items()})


@pytest.mark.slow  # over a second
@pytest.mark.parametrize("order", ["same", "rotated"])
@pytest.mark.parametrize("batched", [False, True], ids=["fetch", "fetch_many"])
def test_concurrent_processes_compute_each_value_once(tmp_path: Path, batched: bool, order: str) -> None:
    """Four processes start together on the same keys; each key is computed once, by one of them."""
    context = multiprocessing.get_context("fork")
    keys = [key(f"shared-{n}") for n in range(4)]
    counter = tmp_path / "computations.log"
    counter.touch()
    n_workers = 4
    barrier, results = context.Barrier(n_workers), context.Queue()
    workers = []
    for w in range(n_workers):
        asked = keys if order == "same" else keys[w:] + keys[:w]
        workers.append(context.Process(target=_worker,
                                       args=(str(tmp_path / "cache"), asked, str(counter), barrier, results, batched)))
    for p in workers:
        p.start()
    outputs = [results.get(timeout=60) for _ in workers]
    for p in workers:
        p.join(timeout=60)
        assert p.exitcode == 0
    computed = counter.read_text().split()
    assert sorted(computed) == sorted(keys), "each key must be computed exactly once across processes"
    expected = {k: (torch.arange(64, dtype=torch.float64) + int(k[:6], 16)).tolist() for k in keys}
    assert all(out == expected for out in outputs)
    assert files(tmp_path / "cache", "*.tmp") == []


def test_fetch_many_reads_hits_and_computes_only_missing(tmp_path: Path) -> None:
    store = DiskStore(tmp_path)
    store.fetch("cav", key(1), Counting({"v": torch.ones(2)}))
    asked: list[list[str]] = []

    def compute_many(missing: list[str]) -> dict[str, dict[str, torch.Tensor]]:
        asked.append(missing)
        return {k: {"v": torch.zeros(2)} for k in missing}

    got = DiskStore(tmp_path).fetch_many("cav", [key(1), key(2), key(2), key(3)], compute_many)
    assert list(got) == [key(1), key(2), key(3)]
    assert asked == [[key(2), key(3)]]
    assert torch.equal(got[key(1)]["v"], torch.ones(2)) and torch.equal(got[key(3)]["v"], torch.zeros(2))
    assert DiskStore(tmp_path).fetch_many("cav", [key(2), key(3)], compute_many) and len(asked) == 1
    with pytest.raises(KeyError, match="no value"):
        DiskStore(tmp_path).fetch_many("cav", [key(9)], lambda missing: {})


# -- never stale: the real engine ----------------------------------------------------------------

LAYERS = ["conv2", "conv3"]
N_RANDOM = 3


class BatchNormCNN(nn.Module):
    """A tiny CNN with buffers (batch-norm running statistics) that change its outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.conv3 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv3(self.conv2(self.conv1(x))))


@dataclasses.dataclass
class Workload:
    concept: torch.Tensor
    randoms: list[torch.Tensor]
    inputs: torch.Tensor


@pytest.fixture(scope="module")
def workload() -> Workload:
    gen = torch.Generator().manual_seed(0)
    return Workload(stripes(12, gen), [noise(12, gen) for _ in range(N_RANDOM)], noise(6, gen))


def _model(kind: type[nn.Module] = SmallCNN) -> nn.Module:
    torch.manual_seed(0)
    return kind().eval()


def run(root: Path | None, model: nn.Module, data: Workload, *, concept: torch.Tensor | None = None,
        **engine: Any) -> tuple[dict[str, Any], MemoryStore]:
    store = MemoryStore(backend=DiskStore(root) if root is not None else None)
    tcav = TCAV(model, store=store, **engine)
    result = tcav.test(data.concept if concept is None else concept, target=1, inputs=data.inputs,
                       layers=LAYERS, random_sets=data.randoms)
    return dataclasses.asdict(result), store


ALL = {"activations": (1 + N_RANDOM) * len(LAYERS), "gradients": len(LAYERS),
       "cav": (N_RANDOM + N_RANDOM * (N_RANDOM - 1) // 2) * len(LAYERS)}


@pytest.fixture(scope="module")
def warm(tmp_path_factory: pytest.TempPathFactory, workload: Workload) -> tuple[Path, dict[str, Any]]:
    """A cache holding the baseline run, and the baseline result."""
    root = tmp_path_factory.mktemp("engine-cache")
    result, store = run(root, _model(), workload)
    assert dict(store.computed) == ALL
    return root, result


def test_unchanged_rerun_computes_nothing_and_is_bit_identical(warm: tuple[Path, dict[str, Any]],
                                                                workload: Workload) -> None:
    root, baseline = warm
    result, store = run(root, _model(), workload)
    assert dict(store.computed) == {}
    assert result == baseline
    disk = store.backend
    # Every value is read back, none computed: the CAVs, the gradients, and the activations, which the
    # per-example evidence (each concept CAV's decision values on every example) reads again.
    assert isinstance(disk, DiskStore) and dict(disk.stats.hits) == ALL
    fresh, _ = run(None, _model(), workload)  # no cache at all
    assert fresh == baseline


def _changed(warm: tuple[Path, dict[str, Any]], workload: Workload, expected: dict[str, int],
             model: nn.Module | None = None, **kwargs: Any) -> None:
    root, baseline = warm
    result, store = run(root, model if model is not None else _model(), workload, **kwargs)
    assert dict(store.computed) == expected
    assert result != baseline
    # ...and the new values are now cached too.
    again, store = run(root, model if model is not None else _model(), workload, **kwargs)
    assert dict(store.computed) == {} and again == result


def test_changed_weight_misses_everything(warm: tuple[Path, dict[str, Any]], workload: Workload) -> None:
    model = _model()
    with torch.no_grad():
        model.conv1[0].weight[0, 0, 0, 0] += 1e-3
    _changed(warm, workload, ALL, model=model)


def test_changed_buffer_misses_everything(tmp_path: Path, workload: Workload) -> None:
    root = tmp_path / "cache"
    baseline, store = run(root, _model(BatchNormCNN), workload)
    assert dict(store.computed) == ALL
    model = _model(BatchNormCNN)
    model.conv1[1].running_mean[0] += 0.5  # only a buffer changes
    _changed((root, baseline), workload, ALL, model=model)


def test_changed_concept_image_misses_what_depends_on_it(warm: tuple[Path, dict[str, Any]],
                                                         workload: Workload) -> None:
    concept = workload.concept.clone()
    concept[3, 1, 10, 10] = 1.0 - concept[3, 1, 10, 10]  # one pixel of one image
    # The concept's activations and its CAVs against each random set; nothing else.
    _changed(warm, workload, {"activations": len(LAYERS), "cav": N_RANDOM * len(LAYERS)}, concept=concept)


def test_changed_trainer_setting_misses_the_cavs(warm: tuple[Path, dict[str, Any]], workload: Workload) -> None:
    _changed(warm, workload, {"cav": ALL["cav"]}, trainer=HingeSGDTrainer(alpha=0.05))


def test_changed_method_misses_the_gradients(warm: tuple[Path, dict[str, Any]], workload: Workload) -> None:
    _changed(warm, workload, {"gradients": len(LAYERS)}, method="integrated_gradients", n_steps=4)


def test_changed_seed_misses_the_cavs(warm: tuple[Path, dict[str, Any]], workload: Workload) -> None:
    _changed(warm, workload, {"cav": ALL["cav"]}, seed=1)


def test_changed_layer_point_misses_everything(warm: tuple[Path, dict[str, Any]], workload: Workload) -> None:
    _changed(warm, workload, ALL, layer_point="input")


def test_model_changed_back_hits_again(warm: tuple[Path, dict[str, Any]], workload: Workload) -> None:
    root, baseline = warm
    model = _model()
    original = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        model.conv2[0].bias[1] -= 0.25
    run(root, model, workload)
    model.load_state_dict(original)
    result, store = run(root, model, workload)
    assert dict(store.computed) == {} and result == baseline


def test_fetch_many_survives_disk_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = DiskStore(tmp_path)
    monkeypatch.setattr(os, "replace", _failing(errno.ENOSPC, os.replace))
    keys = [key(n) for n in range(6)]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        got = store.fetch_many("cav", keys, lambda missing: {k: {"v": torch.full((50,), float(i))}
                                                             for i, k in enumerate(missing)})
        store.flush()  # written in the background: their errors are reported here
    monkeypatch.undo()
    assert [float(got[k]["v"][0]) for k in keys] == [float(i) for i in range(6)]
    assert len(cache_warnings(record)) == 1 and not store.persisting
    assert files(tmp_path, "*.tmp") == [] and files(tmp_path, "*.tcav") == []


def test_fsync_can_be_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd) or original(fd))
    DiskStore(tmp_path / "durable").fetch("cav", KEY, Counting())
    assert len(calls) == 1
    compute = Counting()
    DiskStore(tmp_path / "fast", fsync=False).fetch("cav", KEY, compute)
    assert len(calls) == 1
    assert same(DiskStore(tmp_path / "fast").fetch("cav", KEY, compute), compute.value) and compute.calls == 1


def test_edited_forward_changes_the_model_fingerprint() -> None:
    """Same modules and weights, different forward code: a different model to the cache."""
    from pytest_tcav.engine.fingerprints import model_fingerprint

    class Plain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(self.a(x))

    class Skip(Plain):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(self.a(x) + x)

    torch.manual_seed(0)
    plain = Plain()
    skip = Skip()
    skip.load_state_dict(plain.state_dict())
    Skip.__name__, Skip.__qualname__ = Plain.__name__, Plain.__qualname__  # even under the same name
    assert repr(plain) == repr(skip)
    assert model_fingerprint(plain) != model_fingerprint(skip)


def test_callable_target_gradients_never_reach_the_disk(tmp_path: Path, workload: Workload) -> None:
    def second_logit(output: torch.Tensor) -> torch.Tensor:
        return output[:, 1]

    disk = DiskStore(tmp_path / "cache")
    store = MemoryStore(backend=disk)
    tcav = TCAV(_model(), store=store)
    tcav.test(workload.concept, target=second_logit, inputs=workload.inputs, layers=LAYERS,
              random_sets=workload.randoms)
    assert store.computed["gradients"] == len(LAYERS)
    assert not list((tmp_path / "cache").glob("gradients/*/*.tcav"))


@pytest.mark.slow  # over a second
def test_model_fingerprint_is_the_same_in_another_process() -> None:
    """Keys must not hold memory addresses (a code object's repr does), or a new process never hits."""
    import subprocess
    import sys

    script = (
        "import torch, torchvision\n"
        "from pytest_tcav.engine.fingerprints import model_fingerprint\n"
        "torch.manual_seed(0)\n"
        "print(model_fingerprint(torchvision.models.resnet18(weights=None)))\n"
    )
    runs = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
            for _ in range(2)}
    assert len(runs) == 1

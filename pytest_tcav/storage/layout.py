"""Where disk-cache entries live, and the housekeeping of the folder that holds them.

Kept apart from the store so that every path the cache creates, reads or
deletes is decided in one place, by rules that can be checked at a glance.

Layout: ``<root>/<kind>/<key[:2]>/<key>.tcav`` with ``<key>.lock`` beside it
(and ``<key>.<pid>.<random>.tmp`` while an entry is being written).  File
names come only from the (validated, hexadecimal) key and the (validated)
kind, so no user-supplied name can reach the file system; scanning, clearing
and eviction touch only files whose names follow this layout, so a cache
directory pointed at the wrong place cannot wipe anything else.

* **Bounded.**  Total size is kept under ``max_bytes`` by evicting the least
  recently used entries (a hit refreshes the file's modification time), under
  one cache-wide lock, skipping entries whose lock is held (being written).
  Temporary files left by killed processes are removed on the way.
"""

from __future__ import annotations

import errno
import os
import re
import time
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from filelock import Timeout

from pytest_tcav.storage.locks import new_lock

SUFFIX = ".tcav"
LOCK_SUFFIX = ".lock"
#: Soft locks live in files of their own: a ``.lock`` file an fcntl lock left behind would hold a soft lock forever.
SOFT_LOCK_SUFFIX = ".slock"
TMP_SUFFIX = ".tmp"

#: Temporary files older than this are leftovers of a killed process.
STALE_TMP_SECONDS = 3600.0
#: Eviction brings the total down to this fraction of ``max_bytes``, so that
#: one eviction makes room for many writes instead of running after each one.
LOW_WATER = 0.9

_KEY_RE = re.compile(r"^[0-9a-f]{32,128}$")
_KIND_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_HEX_RE = re.compile(r"^[0-9a-f]{2}$")
_ENTRY_RE = re.compile(r"^([0-9a-f]{32,128})(\.tcav|\.lock|\.slock|\.[0-9a-z.]+\.tmp)$")


def entry_path(root: Path, kind: str, key: str) -> Path:
    """Where the entry for ``(kind, key)`` lives; raises ``ValueError`` on a kind or key that is not ours."""
    if not isinstance(kind, str) or not _KIND_RE.match(kind):
        raise ValueError(f"cache kind must match {_KIND_RE.pattern}, got {kind!r}")
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise ValueError(f"cache key must be lowercase hexadecimal (32-128 digits), got {key!r}")
    return root / kind / key[:2] / f"{key}{SUFFIX}"


def lock_path(path: Path, kind: str = "fcntl") -> Path:
    """The lock file beside an entry, for locks of ``kind`` (``fcntl`` or ``soft``)."""
    return path.with_suffix(SOFT_LOCK_SUFFIX if kind == "soft" else LOCK_SUFFIX)


def temporary_path(path: Path, key: str) -> Path:
    """A fresh name beside an entry for writing it; unique per process and write."""
    return path.with_name(f"{key}.{os.getpid()}.{uuid.uuid4().hex[:12]}{TMP_SUFFIX}")


def writer_pool() -> ThreadPoolExecutor:
    """Threads that write cache entries, started once per process (starting them per batch cost 2 ms a thread)."""
    global _WRITERS
    if _WRITERS is None or _WRITERS[0] != os.getpid():  # a forked child has none of its parent's threads
        _WRITERS = (os.getpid(), ThreadPoolExecutor(max_workers=16, thread_name_prefix="tcav-cache"))
    return _WRITERS[1]


_WRITERS: tuple[int, ThreadPoolExecutor] | None = None


def write_atomically(path: Path, key: str, chunks: Iterable[bytes | memoryview], *, fsync: bool) -> int:
    """Write ``chunks`` to a temporary file beside the entry, fsync, rename; returns the bytes written.

    On any failure (also one raised by ``chunks``) the temporary file is
    removed before the error propagates.  The rename is atomic: readers see
    the old entry or the new one, never half of one.  The directory is not
    fsynced: a rename lost in a crash is only a miss.
    """
    tmp = temporary_path(path, key)
    written = 0
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o644)
    except OSError:
        _discard(tmp)
        raise
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
                written += len(chunk)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        _discard(tmp)
        raise
    return written


def _discard(path: Path) -> None:
    with suppress(OSError):
        path.unlink()


def prepare_root(root: Path) -> None:
    """Create the root with a ``CACHEDIR.TAG``, so backup tools skip the cache."""
    root.mkdir(parents=True, exist_ok=True)
    tag = root / "CACHEDIR.TAG"
    if not tag.exists():
        with suppress(OSError):
            tag.write_text("Signature: 8a477f597d28d172789f06886806bc55\n"
                           "# This directory is a cache of pytest-tcav; see docs/cache.md.\n")


def entry_files(root: Path) -> Iterator[tuple[Path, os.stat_result]]:
    """Every file in the layout (entries, locks, temporaries), and nothing else under root."""
    try:
        kinds = list(os.scandir(root))
    except OSError:
        return
    for kind_dir in kinds:
        if not (_KIND_RE.match(kind_dir.name) and kind_dir.is_dir(follow_symlinks=False)):
            continue
        try:
            shards = list(os.scandir(kind_dir.path))
        except OSError:
            continue
        for shard in shards:
            if not (_HEX_RE.match(shard.name) and shard.is_dir(follow_symlinks=False)):
                continue
            try:
                files = list(os.scandir(shard.path))
            except OSError:
                continue
            for entry in files:
                match = _ENTRY_RE.match(entry.name)
                if not match or not match.group(1).startswith(shard.name):
                    continue
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if entry.is_file(follow_symlinks=False):
                    yield Path(entry.path), info


def size_bytes(root: Path) -> int:
    """Total size of the stored entries."""
    return sum(info.st_size for path, info in entry_files(root) if path.suffix == SUFFIX)


def clear(root: Path) -> int:
    """Remove every entry (and lock and temporary file) under ``root``; returns the number of entries removed."""
    removed = 0
    for path, _info in list(entry_files(root)):
        try:
            path.unlink()
        except OSError:
            continue
        removed += path.suffix == SUFFIX
    for kind_dir in [p for p in _safe_listdir(root) if _KIND_RE.match(p.name)]:
        for shard in [p for p in _safe_listdir(kind_dir) if _HEX_RE.match(p.name)]:
            with suppress(OSError):
                shard.rmdir()
        with suppress(OSError):
            kind_dir.rmdir()
    return removed


def _safe_listdir(path: Path) -> list[Path]:
    try:
        return [p for p in path.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return []


class SizeEstimate:
    """This process's estimate of the cache's total size, so that not every write scans the folder.

    The estimate is the last scan plus this process's own writes; a fresh
    scan is also due after writing a sixteenth of the bound, so other
    workers' writes are noticed too.
    """

    def __init__(self) -> None:
        self.bytes: int | None = None  # unknown until the first scan
        self.written_since_scan = 0

    def add(self, written: int) -> None:
        if self.bytes is not None:
            self.bytes += written
        self.written_since_scan += written

    def forget(self) -> None:
        self.bytes = None

    def scan_due(self, bound: int) -> bool:
        return self.bytes is None or self.written_since_scan > bound // 16 or self.bytes > bound

    def scanned(self, total: int) -> None:
        self.bytes, self.written_since_scan = total, 0


@dataclass(frozen=True)
class Eviction:
    """What one eviction pass did: entries and bytes removed, and the size of what is left."""

    entries: int
    bytes: int
    remaining: int


def evict(root: Path, bound: int | None, *, lock: str = "fcntl") -> Eviction | None:
    """Bring the total size under ``bound`` (``None``: no bound), oldest use first.

    Runs under a cache-wide lock; an entry whose own lock is held (being
    written by some worker) is skipped.  Also removes temporary files left
    by killed processes.  None if another process is evicting (or the lock
    cannot be taken): try again after the next writes.  ``lock``: the kind of
    lock the cache's users take (:mod:`~pytest_tcav.storage.locks`).
    """
    if not root.is_dir():
        return Eviction(0, 0, 0)
    try:
        guard = new_lock(root / f"evict{SOFT_LOCK_SUFFIX if lock == 'soft' else LOCK_SUFFIX}", lock)
        guard.acquire(timeout=60)
    except (Timeout, OSError):
        return None
    evicted = evicted_bytes = 0
    try:
        entries = []
        now = time.time()
        for path, info in entry_files(root):
            if path.suffix == SUFFIX:
                entries.append((info.st_mtime_ns, info.st_size, path))
            elif path.name.endswith(TMP_SUFFIX) and now - info.st_mtime > STALE_TMP_SECONDS:
                _discard(path)
        total = sum(size for _, size, _ in entries)
        if bound is not None and total > bound:
            target = int(bound * LOW_WATER)
            for _mtime, size, path in sorted(entries):
                if total <= target:
                    break
                if _evict_entry(path, lock):
                    total -= size
                    evicted += 1
                    evicted_bytes += size
    finally:
        guard.release()
    return Eviction(evicted, evicted_bytes, total)


def _evict_entry(path: Path, kind: str) -> bool:
    entry_lock = lock_path(path, kind)
    lock = new_lock(entry_lock, kind)
    try:
        lock.acquire(timeout=0)
    except (Timeout, OSError):
        return False  # being written (or unlockable): leave it
    try:
        path.unlink()
    except OSError:
        return False
    finally:
        # Removing the lock file while holding it: a worker that opened the old
        # file at worst computes the value a second time (still correct).
        with suppress(OSError):
            entry_lock.unlink()
        lock.release()
    return True


def describe_write_error(exc: OSError) -> str:
    """Why the disk refused a write, in words for a warning."""
    return {
        errno.ENOSPC: "the disk is full",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.EDQUOT: "disk quota exceeded",
    }.get(exc.errno or 0, str(exc))

"""A persistent, content-addressed disk cache behind :class:`~pytest_tcav.storage.memory.MemoryStore`.

Concept tests run on every commit; most of their cost (concept activations,
input gradients, CAV training) depends only on things that rarely change.
:class:`DiskStore` keeps those values between runs and between pytest-xdist
workers, under the engine's content keys, so a rerun with nothing changed
computes nothing, and a change to anything a value depends on is a miss.

This module holds the store's behaviour: modes, locks, statistics and
warnings.  What an entry's bytes are, and how they are checked, is in
:mod:`pytest_tcav.storage.entry_format` (never stale, never executes code
when loading); where entries live and how the folder is kept bounded is in
:mod:`pytest_tcav.storage.layout`.

Design choices, and why:

* **Never a crash, never a wrong answer.**  An entry that fails the checksum
  or the header validation is reported once as a :class:`TCAVCacheWarning`,
  removed and recomputed.  A disk that refuses writes (read-only, full, no
  permission) is reported once and the run goes on without persisting.
* **Atomic and concurrency-safe.**  Values are written to a temporary file in
  the entry's own directory, fsynced, and moved into place with
  :func:`os.replace` (:func:`~pytest_tcav.storage.layout.write_atomically`), so
  readers see the old entry or the new one, never half of one.  A file lock
  per entry makes concurrent workers that miss the same key compute it once:
  the second waits on the lock, then reads the first's value.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any, Literal

from filelock import Timeout

from pytest_tcav.config import DEFAULT_MAX_BYTES
from pytest_tcav.errors import ConfigurationError, TCAVCacheWarning
from pytest_tcav.storage import layout
from pytest_tcav.storage.entry_format import (
    CorruptEntry,
    EntryTooLarge,
    StaleEntry,
    entry_chunks,
    environment_fingerprint,
    file_identity,
    read_entry,
)
from pytest_tcav.storage.locks import LOCK_KINDS, new_lock
from pytest_tcav.storage.memory import StoreBusy, Value
from pytest_tcav.storage.stats import CacheStats
from pytest_tcav.storage.write_behind import WriteBehind, write_in_threads

Mode = Literal["off", "read", "write", "readwrite"]
MODES: tuple[str, ...] = ("off", "read", "write", "readwrite")

#: Entries held between a ``contains`` and its ``fetch`` (the engine fetches right after asking).
MAX_PINNED = 4096


# -- the store -----------------------------------------------------------------------------


class DiskStore:
    """Values of the engine, persisted under ``root`` by content key.

    Use it behind a :class:`~pytest_tcav.storage.memory.MemoryStore`, which keeps
    values in memory for the session and asks the disk only once per key::

        store = MemoryStore(backend=DiskStore(".pytest_cache/d/tcav"))
        TCAV(model, store=store)

    ``mode``: ``"readwrite"`` (default) reads entries and writes misses;
    ``"read"`` uses existing entries and never writes (nor deletes, nor touches);
    ``"write"`` always recomputes and overwrites; ``"off"`` never touches the disk.
    ``max_bytes`` bounds the total size (least recently used entries are
    evicted; ``None`` for no bound).  ``lock_timeout`` is how long a worker
    waits for another worker computing the same value before computing it
    itself (correct either way, only slower).  ``fsync=False`` skips flushing
    each entry to the device before it is renamed into place: faster on slow
    disks, and still never wrong, since an entry torn by a power loss fails
    its checksum and is recomputed (with a warning).  ``lock``: ``"fcntl"`` or
    ``"soft"`` (:mod:`~pytest_tcav.storage.locks`; soft on network file systems).

    Not safe to share one instance between threads; share the directory instead.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        mode: Mode = "readwrite",
        max_bytes: int | None = DEFAULT_MAX_BYTES,
        *,
        lock_timeout: float = 900.0,
        fsync: bool = True,
        lock: str = "fcntl",
    ) -> None:
        if mode not in MODES:
            raise ConfigurationError(f"cache mode must be one of {MODES}, got {mode!r}")
        if max_bytes is not None and (not isinstance(max_bytes, int) or max_bytes <= 0):
            raise ConfigurationError(f"max_bytes must be a positive number of bytes or None, got {max_bytes!r}")
        if not lock_timeout > 0 or math.isinf(lock_timeout):
            raise ConfigurationError(f"lock_timeout must be a positive, finite number of seconds, got {lock_timeout!r}")
        if lock not in LOCK_KINDS:
            raise ConfigurationError(f"lock must be one of {LOCK_KINDS}, got {lock!r}")
        self.root = Path(root)
        self.mode: Mode = mode
        self.max_bytes = max_bytes
        self.lock_timeout = lock_timeout
        self.fsync = fsync
        self.lock = lock
        self.stats = CacheStats()
        self._environment = environment_fingerprint()
        self._writable = mode in ("readwrite", "write")
        self._pinned: dict[tuple[str, str], Value] = {}
        self._checked: set[tuple[int, int, int]] = set()  # entry files verified or written by this process
        self._warned: set[tuple[str, ...]] = set()
        self._size = layout.SizeEstimate()
        self._root_ready = False
        self._behind = WriteBehind()

    def __repr__(self) -> str:
        return f"DiskStore({str(self.root)!r}, mode={self.mode!r}, max_bytes={self.max_bytes!r})"

    @property
    def persisting(self) -> bool:
        """Whether misses are still written (false in read/off modes and after a disk error)."""
        return self._writable

    # -- protocol ---------------------------------------------------------------------

    def fetch(self, kind: str, key: str, compute: Callable[[], Value]) -> Value:
        """The value under ``(kind, key)``: from disk if a sound entry exists, else ``compute()`` (then stored)."""
        path = self.path(kind, key)
        pinned = self._pinned.pop((kind, key), self._behind.get(kind, key))
        if pinned is not None:
            return pinned
        if self.mode == "off":
            return compute()
        if self.mode != "write":
            value = self._load(kind, key, path)
            if value is not None:
                return value
        lock = self._lock(path) if self._writable else None
        if lock is None:
            self.stats.misses[kind] += 1
            return compute()
        acquired = False
        try:
            acquired = self._acquire(lock, path)
            if acquired and self.mode != "write":
                # Another worker may have computed it while we waited on its lock.
                value = self._load(kind, key, path, recheck=True)
                if value is not None:
                    return value
            self.stats.misses[kind] += 1
            value = compute()
            self._write_all(kind, [(key, path, value)])
        finally:
            if acquired:
                lock.release()
        self._maybe_evict()
        return value

    def fetch_many(
        self, kind: str, keys: list[str], compute_many: Callable[[list[str]], dict[str, Value]], *,
        wait: bool = True,
    ) -> dict[str, Value]:
        """Values for many keys, computing all the missing ones in one call of ``compute_many``.

        For work that is cheaper batched (CAVs of all random pairs trained
        together): the locks of all missing keys are taken (in sorted order, so
        two workers never wait on each other in a cycle), the entries are read
        again, and only what is still missing is computed, so concurrent
        workers never train the same CAV twice.  ``compute_many`` receives
        the missing keys and must return a value for each.  ``wait=False``
        raises :class:`~pytest_tcav.storage.memory.StoreBusy` (holding nothing)
        when another process holds one of the locks, so that the caller can do
        other work meanwhile instead of waiting.  The computed entries are
        written in the background (:mod:`~pytest_tcav.storage.write_behind`;
        :meth:`flush` waits for them).
        """
        wanted = list(dict.fromkeys(keys))
        paths = {key: self.path(kind, key) for key in wanted}
        result: dict[str, Value] = {}
        for key in wanted:
            pinned = self._pinned.pop((kind, key), self._behind.get(kind, key))
            if pinned is not None:
                result[key] = pinned
            elif self.mode in ("read", "readwrite"):
                value = self._load(kind, key, paths[key])
                if value is not None:
                    result[key] = value
        missing = [key for key in wanted if key not in result]
        if not missing:
            return result
        held: dict[str, Any] = {}  # key -> its lock, released below unless handed to the background writers
        try:
            if self._writable:
                for key in sorted(missing):
                    lock = self._lock(paths[key])
                    taken = self._take(lock, paths[key], wait) if lock is not None else "failed"
                    if taken == "busy":
                        raise StoreBusy(f"{kind} entry {key} is being computed by another process")
                    if taken == "failed":
                        break  # compute unlocked: only slower if another worker does the same
                    held[key] = lock
                if self.mode == "readwrite" and held:
                    for key in missing:
                        value = self._load(kind, key, paths[key], recheck=True)
                        if value is not None:
                            result[key] = value
                    missing = [key for key in missing if key not in result]
            if missing:
                computed = compute_many(list(missing))
                absent = [key for key in missing if key not in computed]
                if absent:
                    raise KeyError(f"compute_many returned no value for {len(absent)} key(s), e.g. {absent[0]}")
                for key in missing:
                    self.stats.misses[kind] += 1
                    result[key] = computed[key]
                items = [(key, paths[key], computed[key]) for key in missing]
                self.flush()  # one batch in the background at a time
                if (self._writable and all(key in held for key in missing)
                        and self._behind.start(kind, items, [held[key] for key in missing], self._write_file)):
                    for key in missing:  # the writers release these locks, each after its entry's rename
                        del held[key]
                    missing = []  # the store's counts and eviction come at flush()
                else:
                    self._write_all(kind, items)
        finally:
            for lock in reversed(list(held.values())):
                lock.release()
        if missing:
            self._maybe_evict()
        return {key: result[key] for key in wanted}

    def exists(self, kind: str, key: str) -> bool:
        """Whether an entry's file is there (not read nor checked: a hint for planning work)."""
        if (kind, key) in self._pinned or self._behind.get(kind, key) is not None:
            return True
        return self.mode in ("read", "readwrite") and self.path(kind, key).is_file()

    def contains(self, kind: str, key: str) -> bool:
        """Whether a sound entry exists; if so it is loaded and held until the matching :meth:`fetch`.

        Holding it means a ``True`` answer is kept even if another process
        evicts the file in between, so a caller that skipped computing
        because of it is never asked to compute after all.
        """
        path = self.path(kind, key)
        if (kind, key) in self._pinned or self._behind.get(kind, key) is not None:
            return True
        if self.mode in ("off", "write"):
            return False
        value = self._load(kind, key, path)
        if value is None:
            return False
        self._pinned[(kind, key)] = value
        while len(self._pinned) > MAX_PINNED:  # answers never fetched: forget the oldest
            self._pinned.pop(next(iter(self._pinned)))
        return True

    # -- layout -----------------------------------------------------------------------

    def path(self, kind: str, key: str) -> Path:
        """Where the entry for ``(kind, key)`` lives; raises ``ValueError`` on a kind or key that is not ours."""
        return layout.entry_path(self.root, kind, key)

    def size_bytes(self) -> int:
        """Total size of the stored entries."""
        return layout.size_bytes(self.root)

    def clear(self) -> int:
        """Remove every entry (and lock and temporary file); returns the number of entries removed.

        Only files whose names follow the cache's layout are removed, so a
        cache directory pointed at the wrong place cannot wipe anything else.
        Meant for the start of a run (``--tcav-clear-cache``), before workers start.
        """
        self.flush()
        self._pinned.clear()
        removed = layout.clear(self.root)
        self._size.forget()
        return removed

    # -- reading ----------------------------------------------------------------------

    def _load(self, kind: str, key: str, path: Path, *, recheck: bool = False) -> Value | None:
        """A sound entry's value, or None (missing, stale, or corrupt: reported and removed).

        ``recheck`` marks the second look taken under the entry's lock, whose
        stale or corrupt findings were already counted by the first.
        """
        try:
            value = read_entry(path, kind, key, self._environment, self._checked)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            self._warn_once(("read", kind, key), f"cannot read cache entry {path}: {exc}; recomputing it")
            return None
        except StaleEntry:
            self.stats.stale[kind] += not recheck
            return None
        except CorruptEntry as exc:
            self.stats.corrupt[kind] += not recheck
            action = "removed it and recomputing" if self._writable else "recomputing (read-only mode keeps it)"
            self._warn_once(("corrupt", kind, key), f"corrupt cache entry {path}: {exc}; {action}")
            if self._writable:
                with suppress(OSError):
                    path.unlink()
            return None
        self.stats.hits[kind] += 1
        if self._writable:
            with suppress(OSError):
                os.utime(path)  # least-recently-used order follows the modification time
        return value

    # -- writing ----------------------------------------------------------------------

    def _lock(self, path: Path) -> Any:
        """The entry's lock (its directory created first), or None if the disk refuses."""
        try:
            if not self._root_ready:
                layout.prepare_root(self.root)
                self._root_ready = True
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._write_failed(exc)
            return None
        return new_lock(layout.lock_path(path, self.lock), self.lock)

    def _acquire(self, lock: Any, path: Path) -> bool:
        """Take the entry's lock; False (and compute unlocked, still correct) on timeout or disk error."""
        try:
            lock.acquire(timeout=self.lock_timeout)
            return True
        except Timeout:
            self._warn_once(("timeout",), f"waited {self.lock_timeout:g} s for {layout.lock_path(path, self.lock)}; "
                                          "computing without it")
        except OSError as exc:
            self._write_failed(exc)
        return False

    def _take(self, lock: Any, path: Path, wait: bool) -> Literal["held", "busy", "failed"]:
        """Take the entry's lock, waiting for it or not: "busy" only when another process holds it.

        A disk error is not "busy": it stops persisting, and the caller goes on
        without the lock, as after :meth:`_acquire`'s timeout.
        """
        if wait:
            return "held" if self._acquire(lock, path) else "failed"
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return "busy"
        except OSError as exc:
            self._write_failed(exc)
            return "failed"
        return "held"

    def _write_all(self, kind: str, items: list[tuple[str, Path, Value]]) -> None:
        """Write entries now (:func:`~pytest_tcav.storage.write_behind.write_in_threads`); disk errors warn."""
        if self._writable and items:
            self._record_writes(kind, write_in_threads(kind, items, self._write_file))

    def _attempt(self, function: Callable[..., int], *args: Any) -> int | None:
        """Run a write, turning disk errors and oversized values into warnings; None if nothing was written."""
        try:
            return function(*args)
        except EntryTooLarge as exc:
            self._warn_once(("too-large", str(exc)), f"a {exc} value is larger than the cache limit "
                                                     f"({self.max_bytes} bytes); not storing it")
        except OSError as exc:
            self._write_failed(exc)
        return None

    def _record_writes(self, kind: str, outcomes: list[int | BaseException]) -> None:
        """Count the entries written (outcome: the size) and warn of the others (outcome: the error)."""
        for outcome in outcomes:
            written = self._attempt(_reraise, outcome)
            if written is not None:
                self.stats.writes[kind] += 1
                self._size.add(written)

    def _write_file(self, kind: str, key: str, path: Path, value: Value) -> int:
        """Write one entry atomically; returns its size.  Runs in threads: of the store's state it touches only
        the set of checked files (``set.add`` is atomic)."""
        chunks = entry_chunks(kind, key, value, self._environment, self.max_bytes)
        written = layout.write_atomically(path, key, chunks, fsync=self.fsync)
        with suppress(OSError):
            self._checked.add(file_identity(path))  # its checksum was computed from the value itself
        return written

    def flush(self) -> None:
        """Wait for the entries written in the background; count them, and warn of their errors, now."""
        kind, outcomes = self._behind.settle()
        self._record_writes(kind, outcomes)
        if outcomes:
            self._maybe_evict()

    def _write_failed(self, exc: OSError) -> None:
        self.stats.write_errors += 1
        self._writable = False
        reason = layout.describe_write_error(exc)
        self._warn_once(("write",), f"cannot write to the TCAV cache in {self.root} ({reason}); "
                                    "continuing without persisting values for the rest of this run")

    # -- eviction ---------------------------------------------------------------------

    def _maybe_evict(self) -> None:
        """Evict when this process's estimate of the total (a :class:`~.layout.SizeEstimate`) passes the bound."""
        if self.max_bytes is not None and self._writable and self._size.scan_due(self.max_bytes):
            self.evict()

    def evict(self, max_bytes: int | None = None) -> int:
        """Bring the total size under ``max_bytes`` (default: the store's bound), oldest use first.

        Runs under a cache-wide lock; an entry whose own lock is held (being
        written by some worker) is skipped.  Also removes temporary files left
        by killed processes.  Returns the number of entries evicted.
        """
        self.flush()
        bound = self.max_bytes if max_bytes is None else max_bytes
        outcome = layout.evict(self.root, bound, lock=self.lock)
        if outcome is None:
            return 0  # someone else is evicting, or we cannot lock: try after the next writes
        self.stats.evicted += outcome.entries
        self.stats.evicted_bytes += outcome.bytes
        self._size.scanned(outcome.remaining)
        return outcome.entries

    # -- warnings ---------------------------------------------------------------------

    def _warn_once(self, topic: tuple[str, ...], message: str) -> None:
        if topic in self._warned:
            return
        self._warned.add(topic)
        warnings.warn(message, TCAVCacheWarning, stacklevel=4)


def _reraise(outcome: int | BaseException) -> int:
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome

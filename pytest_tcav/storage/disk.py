"""A persistent, content-addressed disk cache behind :class:`~pytest_tcav.storage.memory.MemoryStore`.

Concept tests run on every commit; most of their cost (concept activations,
input gradients, CAV training) depends only on things that rarely change.
:class:`DiskStore` keeps those values between runs and between pytest-xdist
workers, under the engine's content keys, so a rerun with nothing changed
computes nothing, and a change to anything a value depends on is a miss.

Design choices, and why:

* **Never stale.**  The engine's key already hashes the model (structure,
  parameters, buffers), the layer, the example sets after preprocessing, the
  method, the trainer, the seed and the library version.  Each entry here also
  records an *environment* fingerprint (the source of this package, the torch /
  numpy / scikit-learn / Python versions, the byte order); an entry written by
  another environment is a miss and is overwritten.  This closes the gap the
  library version leaves while the library itself is being edited.
* **Never executes code when loading.**  The format is our own: a fixed
  prefix, a JSON header naming each tensor's dtype (from an allow-list), shape
  and byte range, the raw little-endian tensor bytes, and a SHA-256 of
  everything before it.  Loading is ``json.loads`` plus ``torch.frombuffer``;
  no pickle anywhere.
* **Never a crash, never a wrong answer.**  A short, truncated, bit-flipped or
  malformed entry fails the checksum or the header validation, is reported
  once as a :class:`TCAVCacheWarning`, removed and recomputed.  A disk that
  refuses writes (read-only, full, no permission) is reported once and the run
  goes on without persisting.
* **Atomic and concurrency-safe.**  Values are written to a temporary file in
  the entry's own directory, fsynced, and moved into place with
  :func:`os.replace`, so readers see the old entry or the new one, never half
  of one.  A file lock per entry makes concurrent workers that miss the same
  key compute it once: the second waits on the lock, then reads the first's
  value.
* **Bounded.**  Total size is kept under ``max_bytes`` by evicting the least
  recently used entries (a hit refreshes the file's modification time), under
  one cache-wide lock, skipping entries whose lock is held (being written).

Layout: ``<root>/<kind>/<key[:2]>/<key>.tcav`` with ``<key>.lock`` beside it.
File names come only from the (validated, hexadecimal) key and the (validated)
kind, so no user-supplied name can reach the file system.
"""

from __future__ import annotations

import errno
from contextlib import suppress
import functools
import hashlib
import json
import math
import os
import re
import struct
import sys
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from filelock import FileLock, Timeout

from pytest_tcav.config import DEFAULT_MAX_BYTES
from pytest_tcav.errors import ConfigurationError, TCAVCacheWarning
from pytest_tcav.storage.memory import Value

Mode = Literal["off", "read", "write", "readwrite"]
MODES: tuple[str, ...] = ("off", "read", "write", "readwrite")


#: Bumped whenever the on-disk layout of an entry changes.
FORMAT_VERSION = 1
MAGIC = b"TCAVSTOR"
_PREFIX = struct.Struct("<8sIQ")  # magic, format version, header length
_DIGEST = 32  # SHA-256 trailer
_ALIGN = 64  # tensor data offsets, so frombuffer views are aligned
SUFFIX = ".tcav"
LOCK_SUFFIX = ".lock"
TMP_SUFFIX = ".tmp"

#: Temporary files older than this are leftovers of a killed process.
STALE_TMP_SECONDS = 3600.0
#: Eviction brings the total down to this fraction of ``max_bytes``, so that
#: one eviction makes room for many writes instead of running after each one.
LOW_WATER = 0.9

#: Entries held between a ``contains`` and its ``fetch`` (the engine fetches right after asking).
MAX_PINNED = 4096

_KEY_RE = re.compile(r"^[0-9a-f]{32,128}$")
_KIND_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_HEX_RE = re.compile(r"^[0-9a-f]{2}$")
_ENTRY_RE = re.compile(r"^([0-9a-f]{32,128})(\.tcav|\.lock|\.[0-9a-z.]+\.tmp)$")

_DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
    "complex64": torch.complex64,
    "complex128": torch.complex128,
    "uint8": torch.uint8,
    "int8": torch.int8,
    "int16": torch.int16,
    "int32": torch.int32,
    "int64": torch.int64,
    "bool": torch.bool,
}
_DTYPE_NAMES = {dtype: name for name, dtype in _DTYPES.items()}


class CorruptEntry(Exception):
    """An entry that failed validation; the message says how."""


class StaleEntry(Exception):
    """A valid entry written by another environment or format version."""


# -- sizes and environment ---------------------------------------------------------------


@functools.cache
def code_fingerprint() -> str:
    """A hash of this package's Python sources.

    Part of each entry's environment: while pytest-tcav itself is edited the
    version number stays the same, and an edited trainer must not be served
    CAVs computed by the old one.
    """
    h = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):
        h.update(path.relative_to(package).as_posix().encode())
        h.update(b"\0")
        try:
            h.update(path.read_bytes())
        except OSError:  # pragma: no cover - a package file vanished while running
            h.update(b"<unreadable>")
        h.update(b"\0")
    return h.hexdigest()


def _distribution_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


@functools.cache
def environment_fingerprint() -> str:
    """What, besides the key, an entry's bytes depend on: our code and numeric libraries."""
    parts = {
        "format": FORMAT_VERSION,
        "code": code_fingerprint(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scikit-learn": _distribution_version("scikit-learn"),
        "python": f"{sys.version_info[0]}.{sys.version_info[1]}",
        "byteorder": sys.byteorder,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


# -- the entry format ----------------------------------------------------------------------


def _pad(n: int) -> int:
    return (-n) % _ALIGN


def _tensor_bytes(t: torch.Tensor) -> np.ndarray:
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    if flat.numel() == 0:
        return np.zeros(0, dtype=np.uint8)
    return flat.view(torch.uint8).numpy()


def encode_entry(kind: str, key: str, value: Value, environment: str) -> Iterator[bytes | memoryview]:
    """The chunks of one entry file (prefix, header, tensor bytes with padding); the caller hashes them.

    Streaming the chunks avoids holding a second copy of large activations.
    """
    if not isinstance(value, dict) or not value:
        raise TypeError(f"a cached value must be a non-empty dict of tensors, got {type(value).__name__}")
    arrays: list[tuple[str, torch.Tensor, np.ndarray]] = []
    for name, tensor in value.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise TypeError(f"a cached value maps names to tensors; {name!r} maps to {type(tensor).__name__}")
        if tensor.layout != torch.strided or tensor.dtype not in _DTYPE_NAMES:
            raise TypeError(f"cannot cache tensor {name!r} of layout {tensor.layout} and dtype {tensor.dtype}")
        arrays.append((name, tensor, _tensor_bytes(tensor)))
    entries = []
    offset = 0
    for name, tensor, data in arrays:
        entries.append({"name": name, "dtype": _DTYPE_NAMES[tensor.dtype], "shape": list(tensor.shape),
                        "offset": offset, "nbytes": int(data.nbytes)})
        offset += data.nbytes + _pad(data.nbytes)
    header = {"kind": kind, "key": key, "environment": environment, "payload_bytes": offset, "tensors": entries}
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * _pad(_PREFIX.size + len(text))  # tensor data starts aligned
    yield _PREFIX.pack(MAGIC, FORMAT_VERSION, len(text))
    yield text
    for _name, _tensor, data in arrays:
        if data.nbytes:
            yield memoryview(data).cast("B")
        if _pad(data.nbytes):
            yield b"\0" * _pad(data.nbytes)


def decode_entry(buffer: bytearray, kind: str, key: str, environment: str) -> Value:
    """The tensors of one entry file, after checking everything that can be checked.

    Raises :class:`CorruptEntry` for anything malformed and :class:`StaleEntry`
    for a sound entry of another format version or environment.  The returned
    tensors share ``buffer``'s memory (no copy).
    """
    size = len(buffer)
    if size < _PREFIX.size + _DIGEST:
        raise CorruptEntry(f"file is {size} bytes, shorter than any entry")
    magic, version, header_len = _PREFIX.unpack_from(buffer, 0)
    if magic != MAGIC:
        raise CorruptEntry("not a pytest-tcav cache entry (bad magic)")
    view = memoryview(buffer)
    if hashlib.sha256(view[: size - _DIGEST]).digest() != bytes(view[size - _DIGEST:]):
        raise CorruptEntry("checksum mismatch (truncated or altered file)")
    if version != FORMAT_VERSION:
        raise StaleEntry(f"format version {version}, this library reads {FORMAT_VERSION}")
    start = _PREFIX.size + header_len
    if header_len == 0 or start > size - _DIGEST or start % _ALIGN:
        raise CorruptEntry(f"header length {header_len} does not fit the file")
    try:
        header = json.loads(bytes(view[_PREFIX.size:start]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptEntry(f"unreadable header ({exc})") from None
    if not isinstance(header, dict):
        raise CorruptEntry("header is not an object")
    if header.get("kind") != kind or header.get("key") != key:
        raise CorruptEntry("entry belongs to another key (renamed or copied file)")
    if header.get("environment") != environment:
        raise StaleEntry("written by another version of pytest-tcav or of its numeric libraries")
    payload = size - _DIGEST - start
    if header.get("payload_bytes") != payload:
        raise CorruptEntry(f"header announces {header.get('payload_bytes')} payload bytes, file has {payload}")
    specs = header.get("tensors")
    if not isinstance(specs, list) or not specs:
        raise CorruptEntry("header lists no tensors")
    value: Value = {}
    expected_offset = 0
    for spec in specs:
        name, tensor = _decode_tensor(buffer, spec, start, payload, expected_offset)
        if name in value:
            raise CorruptEntry(f"tensor {name!r} listed twice")
        value[name] = tensor
        expected_offset = spec["offset"] + spec["nbytes"] + _pad(spec["nbytes"])
    if expected_offset != payload:
        raise CorruptEntry("payload has bytes no tensor accounts for")
    return value


def _decode_tensor(buffer: bytearray, spec: Any, start: int, payload: int, offset: int) -> tuple[str, torch.Tensor]:
    if not isinstance(spec, dict):
        raise CorruptEntry("tensor description is not an object")
    name, dtype_name, shape = spec.get("name"), spec.get("dtype"), spec.get("shape")
    nbytes, tensor_offset = spec.get("nbytes"), spec.get("offset")
    if not isinstance(name, str) or dtype_name not in _DTYPES:
        raise CorruptEntry(f"tensor {name!r} has unsupported dtype {dtype_name!r}")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise CorruptEntry(f"tensor {name!r} has invalid shape {shape!r}")
    dtype = _DTYPES[dtype_name]
    itemsize = torch.empty((), dtype=dtype).element_size()
    numel = math.prod(shape)
    if type(nbytes) is not int or nbytes != numel * itemsize:
        raise CorruptEntry(f"tensor {name!r}: {nbytes!r} bytes for shape {shape} of {dtype_name}")
    if tensor_offset != offset or offset + nbytes > payload:
        raise CorruptEntry(f"tensor {name!r} lies outside its place in the payload")
    if numel == 0:
        return name, torch.empty(shape, dtype=dtype)
    tensor = torch.frombuffer(buffer, dtype=dtype, count=numel, offset=start + offset).reshape(shape)
    if dtype == torch.bool and bool((tensor.view(torch.uint8) > 1).any()):
        raise CorruptEntry(f"tensor {name!r} holds bytes that are not booleans")
    return name, tensor


# -- the store -----------------------------------------------------------------------------


@dataclass
class CacheStats:
    """What a :class:`DiskStore` did, per kind of value (for the run's summary line)."""

    hits: Counter[str] = field(default_factory=Counter)
    misses: Counter[str] = field(default_factory=Counter)
    writes: Counter[str] = field(default_factory=Counter)
    corrupt: Counter[str] = field(default_factory=Counter)
    stale: Counter[str] = field(default_factory=Counter)
    evicted: int = 0
    evicted_bytes: int = 0
    write_errors: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Plain numbers, e.g. to send from an xdist worker to the controller."""
        return {
            "hits": dict(self.hits), "misses": dict(self.misses), "writes": dict(self.writes),
            "corrupt": dict(self.corrupt), "stale": dict(self.stale), "evicted": self.evicted,
            "evicted_bytes": self.evicted_bytes, "write_errors": self.write_errors,
        }

    def summary(self) -> str:
        """One line such as ``12 hits, 3 misses, 3 written, 0 evicted``."""
        text = (f"{sum(self.hits.values())} hits, {sum(self.misses.values())} misses, "
                f"{sum(self.writes.values())} written, {self.evicted} evicted")
        if self.corrupt:
            text += f", {sum(self.corrupt.values())} corrupt entries recomputed"
        if self.write_errors:
            text += ", not persisting (disk error)"
        return text


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
    its checksum and is recomputed (with a warning).

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
    ) -> None:
        if mode not in MODES:
            raise ConfigurationError(f"cache mode must be one of {MODES}, got {mode!r}")
        if max_bytes is not None and (not isinstance(max_bytes, int) or max_bytes <= 0):
            raise ConfigurationError(f"max_bytes must be a positive number of bytes or None, got {max_bytes!r}")
        if not lock_timeout > 0 or math.isinf(lock_timeout):
            raise ConfigurationError(f"lock_timeout must be a positive, finite number of seconds, got {lock_timeout!r}")
        self.root = Path(root)
        self.mode: Mode = mode
        self.max_bytes = max_bytes
        self.lock_timeout = lock_timeout
        self.fsync = fsync
        self.stats = CacheStats()
        self._environment = environment_fingerprint()
        self._writable = mode in ("readwrite", "write")
        self._pinned: dict[tuple[str, str], Value] = {}
        self._warned: set[tuple[str, ...]] = set()
        self._approx_bytes: int | None = None
        self._written_since_scan = 0
        self._root_ready = False

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
        pinned = self._pinned.pop((kind, key), None)
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
            self._write(kind, key, path, value)
        finally:
            if acquired:
                lock.release()
        self._maybe_evict()
        return value

    def fetch_many(
        self, kind: str, keys: list[str], compute_many: Callable[[list[str]], dict[str, Value]]
    ) -> dict[str, Value]:
        """Values for many keys, computing all the missing ones in one call of ``compute_many``.

        For work that is cheaper batched (CAVs of all random pairs trained
        together): the locks of all missing keys are taken (in sorted order, so
        two workers never wait on each other in a cycle), the entries are read
        again, and only what is still missing is computed, so concurrent
        workers never train the same CAV twice.  ``compute_many`` receives
        the missing keys and must return a value for each.
        """
        wanted = list(dict.fromkeys(keys))
        paths = {key: self.path(kind, key) for key in wanted}
        result: dict[str, Value] = {}
        for key in wanted:
            pinned = self._pinned.pop((kind, key), None)
            if pinned is not None:
                result[key] = pinned
            elif self.mode in ("read", "readwrite"):
                value = self._load(kind, key, paths[key])
                if value is not None:
                    result[key] = value
        missing = [key for key in wanted if key not in result]
        if not missing:
            return result
        held: list[FileLock] = []
        try:
            if self._writable:
                for key in sorted(missing):
                    lock = self._lock(paths[key])
                    if lock is None or not self._acquire(lock, paths[key]):
                        break
                    held.append(lock)
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
                self._write_all(kind, [(key, paths[key], computed[key]) for key in missing])
        finally:
            for lock in reversed(held):
                lock.release()
        if missing:
            self._maybe_evict()
        return {key: result[key] for key in wanted}

    def contains(self, kind: str, key: str) -> bool:
        """Whether a sound entry exists; if so it is loaded and held until the matching :meth:`fetch`.

        Holding it means a ``True`` answer is kept even if another process
        evicts the file in between, so a caller that skipped computing
        because of it is never asked to compute after all.
        """
        path = self.path(kind, key)
        if (kind, key) in self._pinned:
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
        if not isinstance(kind, str) or not _KIND_RE.match(kind):
            raise ValueError(f"cache kind must match {_KIND_RE.pattern}, got {kind!r}")
        if not isinstance(key, str) or not _KEY_RE.match(key):
            raise ValueError(f"cache key must be lowercase hexadecimal (32-128 digits), got {key!r}")
        return self.root / kind / key[:2] / f"{key}{SUFFIX}"

    def _entry_files(self) -> Iterator[tuple[Path, os.stat_result]]:
        """Every file in the layout (entries, locks, temporaries), and nothing else under root."""
        try:
            kinds = list(os.scandir(self.root))
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

    def size_bytes(self) -> int:
        """Total size of the stored entries."""
        return sum(info.st_size for path, info in self._entry_files() if path.suffix == SUFFIX)

    def clear(self) -> int:
        """Remove every entry (and lock and temporary file); returns the number of entries removed.

        Only files whose names follow the cache's layout are removed, so a
        cache directory pointed at the wrong place cannot wipe anything else.
        Meant for the start of a run (``--tcav-clear-cache``), before workers start.
        """
        removed = 0
        self._pinned.clear()
        for path, _info in list(self._entry_files()):
            try:
                path.unlink()
            except OSError:
                continue
            removed += path.suffix == SUFFIX
        for kind_dir in [p for p in self._safe_listdir(self.root) if _KIND_RE.match(p.name)]:
            for shard in [p for p in self._safe_listdir(kind_dir) if _HEX_RE.match(p.name)]:
                with suppress(OSError):
                    shard.rmdir()
            with suppress(OSError):
                kind_dir.rmdir()
        self._approx_bytes = None
        return removed

    @staticmethod
    def _safe_listdir(path: Path) -> list[Path]:
        try:
            return [p for p in path.iterdir() if p.is_dir() and not p.is_symlink()]
        except OSError:
            return []

    # -- reading ----------------------------------------------------------------------

    def _load(self, kind: str, key: str, path: Path, *, recheck: bool = False) -> Value | None:
        """A sound entry's value, or None (missing, stale, or corrupt: reported and removed).

        ``recheck`` marks the second look taken under the entry's lock, whose
        stale or corrupt findings were already counted by the first.
        """
        try:
            with open(path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                buffer = bytearray(size)
                read = handle.readinto(buffer)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            self._warn_once(("read", kind, key), f"cannot read cache entry {path}: {exc}; recomputing it")
            return None
        try:
            if read != size:
                raise CorruptEntry(f"short read ({read} of {size} bytes)")
            value = decode_entry(buffer, kind, key, self._environment)
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

    def _lock(self, path: Path) -> FileLock | None:
        """The entry's lock (its directory created first), or None if the disk refuses."""
        try:
            if not self._root_ready:
                self._prepare_root()
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._write_failed(exc)
            return None
        return FileLock(str(path.with_suffix(LOCK_SUFFIX)))

    def _prepare_root(self) -> None:
        """Create the root with a ``CACHEDIR.TAG``, so backup tools skip the cache."""
        self.root.mkdir(parents=True, exist_ok=True)
        tag = self.root / "CACHEDIR.TAG"
        if not tag.exists():
            with suppress(OSError):
                tag.write_text("Signature: 8a477f597d28d172789f06886806bc55\n"
                               "# This directory is a cache of pytest-tcav; see docs/cache.md.\n")
        self._root_ready = True

    def _acquire(self, lock: FileLock, path: Path) -> bool:
        """Take the entry's lock; False (and compute unlocked, still correct) on timeout or disk error."""
        try:
            lock.acquire(timeout=self.lock_timeout)
            return True
        except Timeout:
            self._warn_once(("timeout",), f"waited {self.lock_timeout:g} s for {path.with_suffix(LOCK_SUFFIX)}; "
                                          "computing without it")
        except OSError as exc:
            self._write_failed(exc)
        return False

    def _write(self, kind: str, key: str, path: Path, value: Value) -> None:
        """Write ``value`` atomically; on a disk error leave nothing behind and stop persisting."""
        if self._writable:
            self._record_write(kind, self._attempt(self._write_file, kind, key, path, value))

    def _write_all(self, kind: str, items: list[tuple[str, Path, Value]]) -> None:
        """Write many entries at once, in threads.

        Hashing and file writes release the GIL, and concurrent fsyncs share
        one journal commit on common file systems (about ten times faster than
        one fsync after another for hundreds of CAVs).
        """
        if not self._writable or not items:
            return
        if len(items) == 1:
            self._write(kind, *items[0])
            return
        from concurrent.futures import ThreadPoolExecutor

        def attempt(item: tuple[str, Path, Value]) -> int | BaseException:
            try:
                return self._write_file(kind, *item)
            except BaseException as exc:  # handed back to the calling thread
                return exc

        with ThreadPoolExecutor(max_workers=min(16, len(items)), thread_name_prefix="tcav-cache") as pool:
            outcomes = list(pool.map(attempt, items))
        for outcome in outcomes:
            self._record_write(kind, self._attempt(_reraise, outcome))

    def _attempt(self, function: Callable[..., int], *args: Any) -> int | None:
        """Run a write, turning disk errors and oversized values into warnings; None if nothing was written."""
        try:
            return function(*args)
        except _TooLarge as exc:
            self._warn_once(("too-large", str(exc)), f"a {exc} value is larger than the cache limit "
                                                     f"({self.max_bytes} bytes); not storing it")
        except OSError as exc:
            self._write_failed(exc)
        return None

    def _record_write(self, kind: str, written: int | None) -> None:
        if written is None:
            return
        self.stats.writes[kind] += 1
        if self._approx_bytes is not None:
            self._approx_bytes += written
        self._written_since_scan += written

    def _write_file(self, kind: str, key: str, path: Path, value: Value) -> int:
        """Temporary file beside the entry, fsync, rename; returns the bytes written.

        Touches no state of the store, so several can run in threads.  On any
        failure the temporary file is removed before the error propagates.
        The rename is atomic: readers see the old entry or the new one.  The
        directory is not fsynced: a rename lost in a crash is only a miss.
        """
        tmp = path.with_name(f"{key}.{os.getpid()}.{uuid.uuid4().hex[:12]}{TMP_SUFFIX}")
        digest = hashlib.sha256()
        written = 0
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o644)
        except OSError:
            self._discard(tmp)
            raise
        try:
            with os.fdopen(fd, "wb") as handle:
                for chunk in encode_entry(kind, key, value, self._environment):
                    digest.update(chunk)
                    handle.write(chunk)
                    written += len(chunk)
                    if self.max_bytes is not None and written > self.max_bytes:
                        raise _TooLarge(kind)
                handle.write(digest.digest())
                written += _DIGEST
                handle.flush()
                if self.fsync:
                    os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            self._discard(tmp)
            raise
        return written

    @staticmethod
    def _discard(tmp: Path) -> None:
        with suppress(OSError):
            tmp.unlink()

    def _write_failed(self, exc: OSError) -> None:
        self.stats.write_errors += 1
        self._writable = False
        reason = {
            errno.ENOSPC: "the disk is full",
            errno.EROFS: "the file system is read-only",
            errno.EACCES: "permission denied",
            errno.EPERM: "operation not permitted",
            errno.EDQUOT: "disk quota exceeded",
        }.get(exc.errno or 0, str(exc))
        self._warn_once(("write",), f"cannot write to the TCAV cache in {self.root} ({reason}); "
                                    "continuing without persisting values for the rest of this run")

    # -- eviction ---------------------------------------------------------------------

    def _maybe_evict(self) -> None:
        """Evict when this process's estimate of the total passes the bound.

        The estimate is the last scan plus this process's own writes; a fresh
        scan also runs after writing a sixteenth of the bound, so other
        workers' writes are noticed too.
        """
        if self.max_bytes is None or not self._writable:
            return
        if self._approx_bytes is None or self._written_since_scan > self.max_bytes // 16 \
                or self._approx_bytes > self.max_bytes:
            self.evict()

    def evict(self, max_bytes: int | None = None) -> int:
        """Bring the total size under ``max_bytes`` (default: the store's bound), oldest use first.

        Runs under a cache-wide lock; an entry whose own lock is held (being
        written by some worker) is skipped.  Also removes temporary files left
        by killed processes.  Returns the number of entries evicted.
        """
        bound = self.max_bytes if max_bytes is None else max_bytes
        if not self.root.is_dir():
            self._approx_bytes, self._written_since_scan = 0, 0
            return 0
        try:
            guard = FileLock(str(self.root / f"evict{LOCK_SUFFIX}"))
            guard.acquire(timeout=60)
        except (Timeout, OSError):
            return 0  # someone else is evicting, or we cannot lock: try after the next writes
        evicted = 0
        try:
            entries = []
            now = time.time()
            for path, info in self._entry_files():
                if path.suffix == SUFFIX:
                    entries.append((info.st_mtime_ns, info.st_size, path))
                elif path.name.endswith(TMP_SUFFIX) and now - info.st_mtime > STALE_TMP_SECONDS:
                    self._discard(path)
            total = sum(size for _, size, _ in entries)
            if bound is not None and total > bound:
                target = int(bound * LOW_WATER)
                for _mtime, size, path in sorted(entries):
                    if total <= target:
                        break
                    if self._evict_entry(path):
                        total -= size
                        evicted += 1
                        self.stats.evicted += 1
                        self.stats.evicted_bytes += size
            self._approx_bytes = total
            self._written_since_scan = 0
        finally:
            guard.release()
        return evicted

    @staticmethod
    def _evict_entry(path: Path) -> bool:
        lock_path = path.with_suffix(LOCK_SUFFIX)
        lock = FileLock(str(lock_path))
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
                lock_path.unlink()
            lock.release()
        return True

    # -- warnings ---------------------------------------------------------------------

    def _warn_once(self, topic: tuple[str, ...], message: str) -> None:
        if topic in self._warned:
            return
        self._warned.add(topic)
        warnings.warn(message, TCAVCacheWarning, stacklevel=4)


class _TooLarge(Exception):
    """A value over the cache's whole size bound (its message is the value's kind)."""


def _reraise(outcome: int | BaseException) -> int:
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome

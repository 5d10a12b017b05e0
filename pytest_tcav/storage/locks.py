"""The disk cache's locks: the operating system's (``fcntl``) or lock files (``soft``).

Workers that miss the same entry must compute it once, and eviction must not
remove an entry being written; both rest on one lock file per entry (and one
for eviction).  ``fcntl`` locks (``filelock.FileLock``: ``fcntl.flock`` on
Unix, ``msvcrt`` on Windows) vanish with the process that held them, but on
some network file systems they are not shared between machines, or not
supported at all.  ``soft`` locks (``filelock.SoftFileLock``) are files created
exclusively: they hold wherever exclusive creation does (NFS v3 and later,
SMB), at the price that a holder killed on another machine leaves its file
behind (one on the same machine is recognised as dead and reclaimed); the
store then waits its ``lock_timeout`` and computes without the lock, which is
only slower, never wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from filelock import FileLock, SoftFileLock

#: The kinds of lock (config.CACHE_LOCKS repeats them without importing filelock).
LOCK_KINDS: tuple[str, ...] = ("fcntl", "soft")


def new_lock(path: Path | str, kind: str = "fcntl") -> Any:
    """A lock on ``path`` of ``kind`` (a ``filelock`` lock: ``acquire(timeout=)``, ``release()``)."""
    if kind == "soft":
        return SoftFileLock(str(path))
    if kind == "fcntl":
        return FileLock(str(path))
    raise ValueError(f"cache lock must be one of {LOCK_KINDS}, got {kind!r}")

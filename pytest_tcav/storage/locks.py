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

import functools
import os
import stat
from pathlib import Path
from typing import Any

from filelock import FileLock, SoftFileLock

#: The kinds of lock (config.CACHE_LOCKS repeats them without importing filelock).
LOCK_KINDS: tuple[str, ...] = ("fcntl", "soft")


def new_lock(path: Path | str, kind: str = "fcntl") -> Any:
    """A lock on ``path`` of ``kind`` (a ``filelock`` lock: ``acquire(timeout=)``, ``release()``).

    Not thread-local: the thread that writes an entry in the background
    releases the lock its store's thread took (:mod:`~pytest_tcav.storage.write_behind`).
    """
    if kind == "soft":
        return SoftFileLock(str(path), thread_local=False)
    if kind == "fcntl":
        if _shared_directory(str(Path(path).parent)):
            return FileLock(str(path), thread_local=False)  # lock files as writable for the group as the directory is
        # Lock files only their owner writes, as the umask usually makes them anyway: filelock then skips the
        # probe it runs in the directory before creating a group-writable lock file (a second file created
        # and removed per entry; benchmarks/engine_parts.py times the writes both ways)
        return FileLock(str(path), mode=0o644, thread_local=False)
    raise ValueError(f"cache lock must be one of {LOCK_KINDS}, got {kind!r}")


@functools.lru_cache(maxsize=4096)
def _shared_directory(directory: str) -> bool:
    """Whether others than the owner may write in ``directory`` (a cache shared by a group, say)."""
    try:
        return bool(os.stat(directory).st_mode & (stat.S_IWGRP | stat.S_IWOTH))
    except OSError:
        return True

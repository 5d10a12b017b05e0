"""Writing user-owned files (baselines, reports) so that no reader ever sees half of one.

One implementation for every text file the plugin leaves in the user's tree:
a temporary file in the same folder (same file system, so the rename is
atomic), flushed to disk, then renamed over the target; the temporary file is
removed if anything fails.  The disk cache has its own binary writer in
:mod:`pytest_tcav.storage.disk`, with checksums and locks.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def current_umask() -> int:
    """The process's umask, read without changing it where the platform allows.

    Linux reports it in /proc; elsewhere the only way is to set and restore it,
    which is brief but global.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _new_file_mode(path: Path) -> int:
    """The mode of the file being replaced, or what ``open()`` would give a new one."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        return 0o666 & ~current_umask()


def atomic_write_text(path: Path | str, text: str) -> Path:
    """Write ``text`` to ``path``: readers see the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); a committed baseline or a report a CI
        # server publishes gets the mode any other file there would have.
        os.chmod(tmp, _new_file_mode(path))
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable; not possible on every platform
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return path
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
    return path

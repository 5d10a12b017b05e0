"""Giving freed memory back to the operating system between steps of work.

glibc keeps freed blocks below its mmap threshold (adaptive, up to 32 MB) in
the process's heap for reuse, and a set's activations at a wide layer are such
blocks: without this, the resident size after a step stays at its peak, and
the next step's peak comes on top of it (measured on the ResNet-18 shapes of
docs/scaling.md: 2089 MiB peak without, 1752 MiB with).  Elsewhere (macOS,
musl) this does nothing.

A trim walks the heap and costs milliseconds, and the pages it returns are
faulted in again by whatever allocates next, so it runs only when the heap
holds more than ``TRIM_ABOVE`` bytes of free blocks (glibc's ``mallinfo2``,
itself a walk of the free chunks: skipped after a step that freed under
``LOOK_ABOVE``), or more than the caller says: between two sets' forward
passes the free blocks (0.1-0.3 GB on a ResNet-18 at 224 px) are the next
pass's working memory, and trimming them after every pass cost a 20 x 30
check 1 s (``engine/work_units.py`` trims there only above 256 MB).
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable

#: Free heap bytes below which a trim is skipped: what it could return is not worth its time.
TRIM_ABOVE = 32 * 2**20
#: A step that freed less than this (the caller says how much) skips even the look at the heap: glibc's
#: ``mallinfo2`` walks every free chunk (and consolidates the fast bins), so its cost grows with the heap's
#: fragmentation: a process that had tested 130 small concepts spent 31 ms of each 0.16 s check in it.
LOOK_ABOVE = 4 * 2**20


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to do
        return None


@functools.cache
def _mallinfo2() -> Callable[[], _MallInfo2] | None:
    try:
        function = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):  # glibc before 2.33: trim every time
        return None
    function.restype = _MallInfo2
    return function


def free_heap_bytes() -> int | None:
    """Bytes in the heap's free blocks (glibc), or None where that cannot be known."""
    info = _mallinfo2()
    return None if info is None else int(info().fordblks)


def release_freed_memory(above: int = TRIM_ABOVE, freed: int | None = None) -> None:
    """Return the heap's free pages to the operating system (glibc's ``malloc_trim``) when more than ``above``.

    ``freed``: the bytes the step just let go of, when the caller knows them; under :data:`LOOK_ABOVE`
    nothing is done (a small step's free blocks are the next step's, and not worth a look).
    """
    if freed is not None and freed < LOOK_ABOVE:
        return
    trim = _malloc_trim()
    if trim is None:
        return
    free = free_heap_bytes()
    if free is None or free > above:
        trim(0)

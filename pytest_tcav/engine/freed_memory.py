"""Giving freed memory back to the operating system between steps of work.

glibc keeps freed blocks below its mmap threshold (adaptive, up to 32 MB) in
the process's heap for reuse, and a set's activations at a wide layer are such
blocks: without this, the resident size after a step stays at its peak, and
the next step's peak comes on top of it (measured on the ResNet-18 shapes of
docs/scaling.md: 2089 MiB peak without, 1752 MiB with).  Elsewhere (macOS,
musl) this does nothing.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to do
        return None


def release_freed_memory() -> None:
    """Return the heap's free pages to the operating system (glibc's ``malloc_trim``)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)

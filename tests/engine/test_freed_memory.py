"""Freed memory is given back only when the heap holds more free bytes than the caller's threshold."""

from __future__ import annotations

import pytest

from pytest_tcav.engine import freed_memory


@pytest.mark.parametrize(("free", "above", "trims"), [
    (10 * 2**20, freed_memory.TRIM_ABOVE, 0),
    (40 * 2**20, freed_memory.TRIM_ABOVE, 1),
    (200 * 2**20, 256 * 2**20, 0),  # between forward passes: the next pass reuses these blocks
    (300 * 2**20, 256 * 2**20, 1),
    (None, 256 * 2**20, 1),  # glibc without mallinfo2: the size is unknown, so trim
])
def test_trims_only_above_the_threshold(monkeypatch: pytest.MonkeyPatch, free: int | None, above: int,
                                        trims: int) -> None:
    calls: list[int] = []
    monkeypatch.setattr(freed_memory, "_malloc_trim", lambda: calls.append)
    monkeypatch.setattr(freed_memory, "free_heap_bytes", lambda: free)
    freed_memory.release_freed_memory(above=above)
    assert calls == [0] * trims


def test_nothing_to_do_without_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(freed_memory, "_malloc_trim", lambda: None)
    monkeypatch.setattr(freed_memory, "free_heap_bytes", lambda: pytest.fail("asked for the heap's size"))
    freed_memory.release_freed_memory()


def test_the_heap_size_is_known_on_glibc() -> None:
    if freed_memory._malloc_trim() is None or freed_memory._mallinfo2() is None:
        pytest.skip("not glibc 2.33 or later")
    free = freed_memory.free_heap_bytes()
    assert isinstance(free, int) and free >= 0

"""A test's work in units: grouped for sharing or not, the same numbers bit for bit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pytest_tcav import TCAV
from pytest_tcav.engine.work_units import MAX_TILE_SETS, cav_groups
from pytest_tcav.storage.disk import DiskStore
from pytest_tcav.storage.memory import MemoryStore
from tests.helpers import tiny_model


@pytest.mark.parametrize("n", [1, 3, 7, 10, 40])
@pytest.mark.parametrize("shared", [False, True])
def test_groups_cover_every_pair_once(n: int, shared: bool) -> None:
    groups = cav_groups(n, shared)
    pairs = [pair for group in groups for pair in group]
    expected = [(0, j) for j in range(1, n + 1)] + [(i, j) for i in range(1, n + 1) for j in range(i + 1, n + 1)]
    assert sorted(pairs) == sorted(expected) and len(pairs) == len(set(pairs))
    assert groups[0] == [(0, j) for j in range(1, n + 1)]  # the concept's pairs: one group
    assert all(len(g) <= MAX_TILE_SETS**2 for g in groups[1:])
    if shared and n >= 3:
        assert len(groups) - 1 >= 3  # random pairs that two workers can split
    if not shared and n <= MAX_TILE_SETS:
        assert len(groups) == min(n, 2)  # alone: one SGD for the random pairs


@pytest.mark.slow  # over a second
def test_grouping_and_memory_bound_change_no_number(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gen = torch.Generator().manual_seed(5)
    randoms = [tiny_model.noise(12, gen) for _ in range(7)]
    concept, inputs = tiny_model.stripes(12, gen), tiny_model.stripes(10, gen)
    model = tiny_model.EdgeNet()
    kwargs = dict(target=1, inputs=inputs, layers=["conv", "relu"], random_sets=randoms)

    monkeypatch.delenv("TCAV_SHARED_WORK", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    alone = TCAV(model).test(concept, **kwargs)
    monkeypatch.setenv("TCAV_SHARED_WORK", "1")
    tight = MemoryStore(backend=DiskStore(tmp_path), max_bytes=1)  # every value read back from the disk
    shared = TCAV(model, store=tight).test(concept, **kwargs)
    assert shared == alone and tight.held_bytes <= 1
    again = TCAV(model, store=MemoryStore(backend=DiskStore(tmp_path))).test(concept, **kwargs)
    assert again == alone


def test_between_passes_memory_is_given_back_only_when_it_piles_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first pass's free blocks are one pass's working memory: no trim until twice that (and 256 MB)."""
    from pytest_tcav.engine import freed_memory, work_units

    mib = 2**20
    free = iter([700 * mib, 700 * mib, 650 * mib, 1500 * mib, 100 * mib])
    current = {"free": 0}
    trims: list[int] = []

    def heap() -> int:
        return current["free"]

    monkeypatch.setattr(freed_memory, "_malloc_trim", lambda: trims.append)
    monkeypatch.setattr(freed_memory, "free_heap_bytes", heap)
    monkeypatch.setattr(work_units, "free_heap_bytes", heap)
    after = work_units._PassTrims()
    seen = []
    for value in free:
        current["free"] = value
        before = len(trims)
        after()
        seen.append(len(trims) > before)
    assert seen == [False, False, False, True, False]  # 1500 MiB > 2 x 700 MiB: piled up

    small = work_units._PassTrims()  # a small model: the plain 256 MB bound
    current["free"] = 100 * mib
    small()
    current["free"] = 300 * mib
    before = len(trims)
    small()
    assert len(trims) == before + 1

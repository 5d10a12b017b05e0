"""Cache faults: processes killed mid-write, a worker dying with a lock held, a full disk, an unwritable cache.

A baseline's write faults are in tests/checks/test_baseline_write_faults.py.

The kill tests run a real writer in a subprocess and end it with SIGKILL
(no ``finally``, no cleanup: what a crash, an OOM kill or a pulled plug
leaves), both at a chosen point inside a write (deterministic: the writer
kills itself after part of an entry reached its temporary file) and at
random moments of a write loop.  Afterwards every entry that exists must
load bit for bit, every missing one must be recomputed, and no temporary
file may be taken for an entry.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from pytest_tcav.engine.fingerprints import make_key
from pytest_tcav.errors import TCAVCacheWarning
from pytest_tcav.storage import entry_format
from pytest_tcav.storage.disk import DiskStore
from pytest_tcav.storage.layout import STALE_TMP_SECONDS, SUFFIX, TMP_SUFFIX

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and fork semantics are POSIX")

REPO = Path(__file__).resolve().parents[2]
N_ENTRIES = 12
#: Values of a few MB: a write takes long enough for a random kill to land inside one.
ELEMENTS = 1_500_000


def key(n: int) -> str:
    return make_key("activations", {"fault-test": n})


def value(n: int) -> dict[str, torch.Tensor]:
    """Two tensors, so a kill after the first leaves a temporary file with real payload in it."""
    return {"a": torch.full((ELEMENTS,), float(n)), "b": torch.arange(1000, dtype=torch.float64) * n}


WRITER = """
import os, signal, sys
import torch
sys.path.insert(0, {repo!r})
from pytest_tcav.storage import entry_format
from pytest_tcav.storage.disk import DiskStore
from pytest_tcav.engine.fingerprints import make_key

root, die_at = sys.argv[1], int(sys.argv[2])

def value(n):
    return {{"a": torch.full(({elements},), float(n)), "b": torch.arange(1000, dtype=torch.float64) * n}}

if die_at >= 0:
    # Die inside the write of entry `die_at`, right after its first tensor's bytes were written.
    original = entry_format.encode_entry
    def encode(kind, key, val, env):
        for index, chunk in enumerate(original(kind, key, val, env)):
            yield chunk
            if float(val["a"][0]) == die_at and index == 2:
                os.kill(os.getpid(), signal.SIGKILL)
    entry_format.encode_entry = encode

store = DiskStore(root, max_bytes=None, fsync=False)
print("ready", flush=True)
for n in range({n}):
    store.fetch("activations", make_key("activations", {{"fault-test": n}}), lambda n=n: value(n))
    print(n, flush=True)
"""


def _writer(tmp_path: Path, root: Path, die_at: int) -> subprocess.Popen[str]:
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(repo=str(REPO), elements=ELEMENTS, n=N_ENTRIES))
    return subprocess.Popen([sys.executable, str(script), str(root), str(die_at)], stdout=subprocess.PIPE,
                            text=True)


def _wait_for(process: subprocess.Popen[str], line: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        got = process.stdout.readline()
        if got.strip() == line:
            return
        if not got:
            break
    raise AssertionError(f"the writer never printed {line!r}")


def _temporaries(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob(f"*{TMP_SUFFIX}") if p.is_file())


def _check_after_kill(root: Path) -> tuple[int, int]:
    """Every entry left loads bit for bit; every other value is recomputed; returns (entries, temporaries)."""
    entries = sorted(root.rglob(f"*{SUFFIX}"))
    temporaries = _temporaries(root)
    store = DiskStore(root, max_bytes=None)
    computed: list[int] = []
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for n in range(N_ENTRIES):
            def compute(n: int = n) -> dict[str, torch.Tensor]:
                computed.append(n)
                return value(n)

            got = store.fetch("activations", key(n), compute)
            expected = value(n)
            assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in got), n
    assert [w for w in record if issubclass(w.category, TCAVCacheWarning)] == [], "no entry may be corrupt"
    assert sum(store.stats.hits.values()) == len(entries)  # every file named like an entry was one
    assert len(computed) == N_ENTRIES - len(entries)
    assert store.size_bytes() == sum(p.stat().st_size for p in root.rglob(f"*{SUFFIX}"))  # temporaries not counted
    return len(entries), len(temporaries)


@pytest.mark.slow  # over a second
def test_a_writer_killed_inside_a_write_leaves_only_sound_entries(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    process = _writer(tmp_path, root, die_at=4)
    assert process.wait(timeout=180) == -signal.SIGKILL
    (torn,) = _temporaries(root)
    assert torn.name.startswith(key(4)) and torn.stat().st_size > ELEMENTS * 4  # a real half-written entry
    entries, temporaries = _check_after_kill(root)
    assert (entries, temporaries) == (4, 1)
    # The leftover is removed by the next eviction once it is old enough to be nobody's write in progress.
    os.utime(torn, (time.time() - STALE_TMP_SECONDS - 1,) * 2)
    DiskStore(root, max_bytes=10**12).evict()
    assert _temporaries(root) == []


@pytest.mark.slow  # over a second
def test_a_writer_killed_at_a_random_moment_leaves_only_sound_entries(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    process = _writer(tmp_path, root, die_at=-1)
    _wait_for(process, "2")
    time.sleep(random.uniform(0, 0.03))
    process.kill()
    process.wait(timeout=60)
    entries, _temporaries_left = _check_after_kill(root)
    assert 3 <= entries <= N_ENTRIES


@pytest.mark.slow  # over a second
def test_a_worker_killed_while_computing_does_not_block_the_others(tmp_path: Path) -> None:
    """The entry lock is an OS lock: it dies with its holder, so the next worker neither waits nor warns."""
    root = tmp_path / "cache"
    script = tmp_path / "holder.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        import torch
        from pytest_tcav.storage.disk import DiskStore
        from pytest_tcav.engine.fingerprints import make_key

        def compute():
            print("computing", flush=True)
            time.sleep(600)

        DiskStore(sys.argv[1]).fetch("activations", make_key("activations", {{"fault-test": 0}}), compute)
    """))
    process = subprocess.Popen([sys.executable, str(script), str(root)], stdout=subprocess.PIPE, text=True)
    try:
        _wait_for(process, "computing")
    finally:
        process.kill()
        process.wait(timeout=60)
    store = DiskStore(root, lock_timeout=30)
    start = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("error", TCAVCacheWarning)
        got = store.fetch("activations", key(0), lambda: value(0))
    assert time.monotonic() - start < 10 and torch.equal(got["a"], value(0)["a"])
    assert store.stats.writes["activations"] == 1


def test_disk_full_in_the_middle_of_an_entry_leaves_no_partial_file(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC after part of the entry was written (the existing tests fail fsync or the rename)."""
    original = entry_format.encode_entry

    def encode(*args: Any) -> Any:
        for index, chunk in enumerate(original(*args)):
            yield chunk
            if index == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(entry_format, "encode_entry", encode)
    store = DiskStore(tmp_path / "cache")
    with pytest.warns(TCAVCacheWarning, match=r"cannot write to the TCAV cache in .* \(the disk is full\); "
                                              "continuing without persisting values for the rest of this run"):
        got = store.fetch("activations", key(1), lambda: value(1))
    assert torch.equal(got["b"], value(1)["b"]) and not store.persisting
    assert list((tmp_path / "cache").rglob("*.tcav")) == [] and _temporaries(tmp_path / "cache") == []


CACHE_CHECKS = """
from pytest_tcav import assert_concept_significant


def test_horizontal(model):
    assert_concept_significant(model, "horizontal", target=1, layers="relu")


def test_vertical(model):
    assert_concept_significant(model, "vertical", target=1, layers="relu", direction="negative")
"""


@pytest.mark.slow  # runs pytest
def test_an_unwritable_cache_directory_runs_without_cache_and_warns_once(pytester: pytest.Pytester) -> None:
    """Real, not simulated: the cache folder's parent is a file, so nothing can be created there."""
    from tests.helpers.plugin_helpers import INI, make_project

    make_project(pytester, ini=INI + "tcav_cache_dir = blocked/cache\n")
    (pytester.path / "blocked").write_text("a file where the cache folder should be")
    pytester.makepyfile(test_checks=CACHE_CHECKS)
    result = pytester.runpytest("-p", "no:cacheprovider", "-W", "always::pytest_tcav.TCAVCacheWarning")
    result.assert_outcomes(passed=2)
    output = result.stdout.str()
    assert output.count("TCAVCacheWarning: cannot write to the TCAV cache in") == 1, output
    assert "continuing without persisting values for the rest of this run" in output

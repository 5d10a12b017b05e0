"""Faults while writing a baseline: a writer killed mid-write leaves the old or the new file, a full disk
is a clear error (the cache's write faults are in tests/storage/test_write_faults.py)."""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers.checks import current
from tests.storage.test_write_faults import REPO, _wait_for

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and fork semantics are POSIX")


BASELINE_WRITER = """
import os, signal, sys
sys.path.insert(0, {repo!r})
from pathlib import Path
import pytest_tcav.checks.baseline_file as baselines

path, base, die_at = Path(sys.argv[1]), Path(sys.argv[2]).read_text(), int(sys.argv[3])

def version(n):
    return base + "".join(f"# padding {{n}} {{k}}\\n" for k in range(40000))

if die_at >= 0:
    original = os.fsync
    def fsync(fd):  # the temporary file is complete, the rename has not happened
        if baselines_version[0] == die_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(fd)
    os.fsync = fsync
baselines_version = [0]
print("ready", flush=True)
for n in range(1000):
    baselines_version[0] = n
    baselines.atomic_write(path, version(n))
    print(n, flush=True)
"""


def _baseline_text(tmp_path: Path) -> str:
    """A real baseline file, from a real (tiny) check."""
    from pytest_tcav import TCAV
    from pytest_tcav.checks.baseline_file import Baseline

    gen = torch.Generator().manual_seed(0)
    sets = [torch.rand(6, 4, generator=gen) + 0.2 * k for k in range(5)]
    torch.manual_seed(0)
    result = TCAV(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))).test(
        sets[0], target=1, inputs=sets[1], layers=["1"], random_sets=sets[2:])
    return Baseline.from_result(result, "killed").to_yaml()


@pytest.mark.slow  # over a second
@pytest.mark.parametrize("mode", ["inside the write", "random moment"])
def test_a_baseline_writer_killed_mid_write_leaves_the_old_or_the_new_file(tmp_path: Path, mode: str) -> None:
    from pytest_tcav.checks.baseline_file import load_baseline
    from pytest_tcav.checks.baseline_names import is_baseline_file

    base = tmp_path / "base.yaml"
    base.write_text(_baseline_text(tmp_path))
    path = tmp_path / "tcav_baselines" / "killed.yaml"
    script = tmp_path / "baseline_writer.py"
    script.write_text(BASELINE_WRITER.format(repo=str(REPO)))
    die_at = 3 if mode == "inside the write" else -1
    process = subprocess.Popen([sys.executable, str(script), str(path), str(base), str(die_at)],
                               stdout=subprocess.PIPE, text=True)
    if die_at < 0:
        _wait_for(process, "5")
        time.sleep(random.uniform(0, 0.02))
        process.kill()
    assert process.wait(timeout=120) == -signal.SIGKILL
    def version(n: int) -> str:
        return base.read_text() + "".join(f"# padding {n} {k}\n" for k in range(40000))

    text = path.read_text()
    written = int(text[text.index("# padding ") + 10:].split()[0])
    assert text == version(written)  # one whole version, never a mixture or a prefix
    if die_at >= 0:
        assert written == die_at - 1
    assert load_baseline(path).name == "killed"
    leftovers = [p for p in path.parent.iterdir() if p != path]
    assert all(not is_baseline_file(p) for p in leftovers), leftovers  # never read as baselines
    if die_at >= 0:
        assert len(leftovers) == 1 and leftovers[0].read_text() == version(die_at)


def test_a_full_disk_while_writing_a_baseline_is_a_clear_error(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_tcav import TCAVSession, assert_concept_stable
    from pytest_tcav.config import TCAVConfig
    from pytest_tcav.errors import BaselineError

    gen = torch.Generator().manual_seed(0)
    sets = [torch.rand(6, 4, generator=gen) + 0.2 * k for k in range(5)]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    session = TCAVSession(TCAVConfig(update_baselines=True, root=tmp_path))
    original = os.fsync

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(BaselineError, match=r"cannot write baseline files in .*: \[Errno 28\] No space left"):
        with current(session):
            assert_concept_stable(model, sets[0], target=1, layers=["1"], baseline="full", baseline_dir="b",
                                  inputs=sets[1], random_sets=sets[2:])
    monkeypatch.setattr(os, "fsync", original)
    assert [p.name for p in (tmp_path / "b").iterdir()] == []  # no partial file, no temporary file

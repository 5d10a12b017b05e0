"""Smoke tests of the scaling benchmarks (xdist_threads.py, cache_carry.py) at tiny sizes.

Each one runs real pytest processes on a tiny ResNet-18 suite; nothing is
timed here (the figures come from the scripts, benchmarks/README.md), only
that they run, that -n 2 computes what the serial run computes with the same
results, and that a carried cache leaves nothing to compute.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import cache_carry  # noqa: E402
import xdist_threads  # noqa: E402

pytestmark = pytest.mark.slow  # every test here runs pytest processes of a benchmark (about a minute)

TINY = dict(images=5, inputs=2, size=32, random_sets=4)


@pytest.fixture(autouse=True)
def not_a_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "OMP_NUM_THREADS", "PYTEST_ADDOPTS"):
        monkeypatch.delenv(name, raising=False)


def test_xdist_threads_runs_serial_and_two_workers(tmp_path: Path) -> None:
    record = xdist_threads.run(workers=[2], folder=tmp_path, **TINY)  # type: ignore[arg-type]
    json.dumps(record)
    serial, parallel = record["runs"]
    assert serial["checks"] == parallel["checks"] == 4
    assert serial["computed"] == parallel["computed"] and serial["computed"]["cav"] > 0
    assert set(parallel["processes"]) <= {"gw0", "gw1"} and parallel["ratio_to_serial"] > 0
    expected = max(1, __import__("pytest_tcav.plugin.xdist_threads", fromlist=["x"]).usable_cores() // 2)
    assert {p["threads"] for p in parallel["processes"].values()} == {expected}
    xdist_threads.report(record)


def test_cache_carry_leaves_clone_b_nothing_to_compute(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record = cache_carry.run(folder=tmp_path, **TINY)  # type: ignore[arg-type]
    assert sum(record["a_computed"].values()) > 0 and not any(record["b_computed"].values())
    assert "computed nothing" in record["b_cache_line"] and record["import"].startswith("imported ")
    cache_carry.report(record)
    assert "clone B computed nothing" in capsys.readouterr().out

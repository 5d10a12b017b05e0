"""torch threads under pytest-xdist: each worker gets cores // workers, unless the user set them."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from pytest_tcav.config import TCAVConfig, build_config, parse_threads
from pytest_tcav.errors import ConfigurationError
from pytest_tcav.plugin import xdist_threads as threads

# A test that builds the session (the tcav fixture) and notes the threads torch runs with.
PROBE = '''
import json, os
import torch

def _note(tcav):
    name = os.environ.get("PYTEST_XDIST_WORKER", "serial")
    with open(os.path.join(os.environ["THREADS_OUT"], name + ".json"), "w") as handle:
        json.dump({"threads": torch.get_num_threads(), "omp": os.environ.get("OMP_NUM_THREADS")}, handle)

def test_one(tcav):
    _note(tcav)

def test_two(tcav):
    _note(tcav)
'''


def test_auto_threads_divides_the_cores_among_workers() -> None:
    assert threads.auto_threads(2, 8, {}) == 4
    assert threads.auto_threads(3, 8, {}) == 2
    assert threads.auto_threads(4, 2, {}) == 1  # never fewer than one
    assert threads.auto_threads(None, 8, {}) is None  # not a worker: torch's own default
    assert threads.auto_threads(1, 8, {}) is None  # -n 1: one worker has the machine to itself
    assert threads.auto_threads(2, 8, {"OMP_NUM_THREADS": "3"}) is None  # the user's setting wins
    assert threads.auto_threads(2, 8, {"MKL_NUM_THREADS": "3"}) is None


def test_worker_count_reads_pytest_xdist_variables() -> None:
    assert threads.worker_count({"PYTEST_XDIST_WORKER": "gw1", "PYTEST_XDIST_WORKER_COUNT": "4"}) == 4
    assert threads.worker_count({"PYTEST_XDIST_WORKER_COUNT": "4"}) is None
    assert threads.worker_count({"PYTEST_XDIST_WORKER": "gw0", "PYTEST_XDIST_WORKER_COUNT": "x"}) is None
    assert threads.usable_cores() >= 1


def test_tcav_threads_setting_is_auto_or_a_count() -> None:
    assert parse_threads("auto", "tcav_threads") is None and parse_threads(" AUTO ", "x") is None
    assert parse_threads("3", "tcav_threads") == 3
    assert build_config({"tcav_threads": ("2", "tcav_threads in pytest.ini")}, root=Path.cwd()).threads == 2
    assert TCAVConfig().threads is None
    for bad in ("0", "many", "-1"):
        with pytest.raises(ConfigurationError, match="tcav_threads in pytest.ini must be auto or a number"):
            build_config({"tcav_threads": (bad, "tcav_threads in pytest.ini")}, root=Path.cwd())


def test_the_session_sets_explicit_threads_and_auto_only_when_unchanged() -> None:
    import torch

    from pytest_tcav.session.torch_threads import apply_threads

    before = torch.get_num_threads()
    try:
        apply_threads(TCAVConfig(threads=1))
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        apply_threads(TCAVConfig(worker_threads=(1, 2)))  # unchanged since the plugin looked: auto's choice
        assert torch.get_num_threads() == 1
        torch.set_num_threads(3)
        apply_threads(TCAVConfig(worker_threads=(1, 2)))  # changed (a conftest's set_num_threads): kept
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


# -- in a pytest run ---------------------------------------------------------------------------


@pytest.fixture
def probe(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.Pytester:
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT",
                 "PYTEST_ADDOPTS"):
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "threads"
    out.mkdir()
    monkeypatch.setenv("THREADS_OUT", str(out))
    pytester.makepyfile(test_probe=PROBE)
    pytester.makeini("[pytest]\n")
    return pytester


def _seen(pytester: pytest.Pytester, *args: str) -> dict[str, dict[str, object]]:
    out = Path(__import__("os").environ["THREADS_OUT"])
    for old in out.iterdir():
        old.unlink()
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
    result.assert_outcomes(passed=2)
    return {path.stem: json.loads(path.read_text()) for path in out.iterdir()}


@pytest.mark.slow  # runs pytest
def test_a_worker_gets_cores_divided_by_workers(probe: pytest.Pytester) -> None:
    expected = max(1, threads.usable_cores() // 2)
    seen = _seen(probe, "-n", "2")
    assert set(seen) <= {"gw0", "gw1"} and seen
    for worker in seen.values():
        assert worker == {"threads": expected, "omp": str(expected)}


@pytest.mark.slow  # runs pytest
def test_a_serial_run_leaves_torch_alone(probe: pytest.Pytester) -> None:
    seen = _seen(probe)
    assert seen["serial"]["omp"] is None


@pytest.mark.slow  # runs pytest
def test_the_users_environment_variable_wins(probe: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert {w["omp"] for w in _seen(probe, "-n", "2").values()} == {"3"}  # left as the user set it


@pytest.mark.slow  # runs pytest
def test_a_conftests_set_num_threads_wins(probe: pytest.Pytester) -> None:
    probe.makeconftest("import torch\ntorch.set_num_threads(3)\n")
    assert {w["threads"] for w in _seen(probe, "-n", "2").values()} == {3}


@pytest.mark.slow  # runs pytest
def test_tcav_threads_wins_over_auto(probe: pytest.Pytester) -> None:
    probe.makeini("[pytest]\ntcav_threads = 3\n")
    seen = _seen(probe, "-n", "2")
    assert {w["threads"] for w in seen.values()} == {3}
    assert {w["omp"] for w in seen.values()} == {None}  # set by the session, not through the environment


@pytest.mark.slow  # runs pytest
def test_torch_loaded_before_the_plugin_gets_auto_threads_from_the_session(probe: pytest.Pytester) -> None:
    # A plugin loaded with -p imports torch before pytest-tcav can set OMP_NUM_THREADS.
    probe.makepyfile(torch_first="import torch\n")
    expected = max(1, threads.usable_cores() // 2)
    seen = _seen(probe, "-n", "2", "-p", "torch_first")
    assert {w["threads"] for w in seen.values()} == {expected}
    assert {w["omp"] for w in seen.values()} == {None}
    # ... and a conftest's own choice still wins.
    probe.makeconftest(textwrap.dedent("""
        import torch
        torch.set_num_threads(3)
    """))
    assert {w["threads"] for w in _seen(probe, "-n", "2", "-p", "torch_first").values()} == {3}

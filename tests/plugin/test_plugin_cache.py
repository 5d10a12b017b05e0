"""The disk cache in a pytest run: options, reruns, pytest-xdist, work shared between concepts, devices."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from pytest_tcav import TCAV, HingeSGDTrainer, MemoryStore
from pytest_tcav.config import CACHE_MODES, TCAVConfig, build_config
from pytest_tcav.errors import ConfigurationError
from pytest_tcav.session.session import TCAVSession, default_device, default_store
from pytest_tcav.storage.disk import MODES, DiskStore
from tests.helpers import tiny_model
from tests.helpers.plugin_helpers import RECORD_DUMPING_CHECKS, make_project, summary_section

CHECKS = RECORD_DUMPING_CHECKS + """

def test_horizontal(model):
    assert_concept_significant(model, "horizontal", target=1, layers=["conv", "relu"], require="any")


def test_horizontal_relu(model):
    assert_concept_significant(model, "horizontal", target="horizontal", layers="relu")


def test_vertical(model):
    assert_concept_significant(model, "vertical", target=1, layers=["conv", "relu"], direction="negative",
                               require="any")


def test_noise(model):
    assert_concept_insignificant(model, "noisy", target=1, layers=["conv", "relu"])


def test_vertical_class(model):
    assert_concept_significant(model, "vertical", target="vertical", layers="relu")


def test_noise_relu(model):
    assert_concept_insignificant(model, "noisy", target=0, layers="relu")
"""

#: Each process writes what its store computed, to a file of its own (a worker's name or "serial").
COUNTS_CONFTEST = """

def pytest_sessionfinish(session):
    import json
    import os
    from pathlib import Path

    from pytest_tcav.session.registry import active_handle

    handle = active_handle()
    if os.environ.get("COUNT_DIR") and handle.built:  # not the xdist controller, which tests nothing
        name = os.environ.get("PYTEST_XDIST_WORKER", "serial")
        computed = handle.get().cache_stats()["computed"]
        Path(os.environ["COUNT_DIR"], name + ".json").write_text(json.dumps(computed))
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    make_project(pytester)
    pytester.makepyfile(test_checks=CHECKS)
    return pytester


def cache_lines(output: str) -> list[str]:
    return [re.sub(r"^-+ | -+$", "", line) for line in output.splitlines() if "tcav cache:" in line]


def numbers(line: str, word: str) -> int:
    match = re.search(rf"(\d+) {word}", line)
    return int(match.group(1)) if match else 0


# -- options ---------------------------------------------------------------------------


def test_cache_settings_are_validated() -> None:
    assert CACHE_MODES == MODES  # the torch-free copy in config.py follows the cache's modes
    config = build_config({"tcav_cache": ("read", "x"), "tcav_cache_size": ("500MB", "y"),
                           "tcav_cache_dir": ("/tmp/somewhere", "z")}, root=Path("."))
    assert (config.cache, config.cache_size, config.cache_dir) == ("read", 500 * 1000**2, Path("/tmp/somewhere"))
    assert build_config({"tcav_cache_size": ("none", "x")}, root=Path(".")).cache_size is None
    assert TCAVConfig().cache_size == 8 * 1024**3 and TCAVConfig().cache_dir is None
    with pytest.raises(ConfigurationError, match="--tcav-cache must be one of off, read, write, readwrite"):
        build_config({"tcav_cache": ("on", "--tcav-cache")}, root=Path("."))
    with pytest.raises(ConfigurationError, match="--tcav-cache-size: cannot read cache size 'lots'"):
        build_config({"tcav_cache_size": ("lots", "--tcav-cache-size")}, root=Path("."))


def test_default_store_follows_the_settings(tmp_path: Path) -> None:
    assert default_store(TCAVConfig()).backend is None  # outside pytest: memory only
    assert default_store(TCAVConfig(cache_dir=tmp_path, cache="off")).backend is None
    backend = default_store(TCAVConfig(cache_dir=tmp_path, cache="read", cache_size=1000)).backend
    assert isinstance(backend, DiskStore)
    assert (backend.root, backend.mode, backend.max_bytes) == (tmp_path, "read", 1000)


@pytest.mark.slow  # runs pytest
def test_options_reach_the_session(pytester: pytest.Pytester) -> None:
    make_project(pytester, data=False, ini="""
        [pytest]
        tcav_cache_dir = build/tcav-cache
        tcav_cache_size = 10MiB
    """)
    pytester.makepyfile(test_x="""
        from pathlib import Path


        def test_store(tcav, pytestconfig):
            backend = tcav.store.backend
            assert backend.root == Path(pytestconfig.inipath).parent / "build" / "tcav-cache"
            assert (backend.mode, backend.max_bytes) == ("readwrite", 10 * 1024**2)


        def test_nothing_computed_no_cache_line(tcav):
            pass
    """)
    result = pytester.runpytest()
    result.assert_outcomes(passed=2)
    assert not cache_lines(result.stdout.str())
    result = pytester.runpytest("--tcav-cache=off", "-k", "nothing")
    result.assert_outcomes(passed=1)


@pytest.mark.slow  # runs pytest
def test_default_location_is_in_pytests_cache_dir(pytester: pytest.Pytester) -> None:
    make_project(pytester, data=False, ini="[pytest]\ncache_dir = .my_cache\n")
    pytester.makepyfile(test_x="""
        def test_store(tcav, pytestconfig):
            assert tcav.store.backend.root == pytestconfig.rootpath / ".my_cache" / "d" / "tcav"
    """)
    pytester.runpytest().assert_outcomes(passed=1)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(failed=1)  # falls back to .pytest_cache


@pytest.mark.slow  # runs pytest
@pytest.mark.parametrize(("args", "message"), [
    (["--tcav-cache=on"], "--tcav-cache must be one of off, read, write, readwrite, got 'on'"),
    (["--tcav-cache-size=lots"], "--tcav-cache-size: cannot read cache size 'lots'"),
])
def test_bad_cache_options_are_usage_errors(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    pytester.makepyfile(test_x="def test_x(): pass")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


# -- reruns ------------------------------------------------------------------------------


@pytest.mark.slow  # runs pytest
def test_a_rerun_computes_nothing_and_the_cache_options_work(project: pytest.Pytester) -> None:
    cache = project.path / ".pytest_cache" / "d" / "tcav"
    first = project.runpytest()
    first.assert_outcomes(passed=6)
    (line,) = cache_lines(first.stdout.str())
    assert line.startswith("tcav cache: computed ") and f"({cache}, readwrite)" in line
    written = numbers(line, "written")
    assert written == numbers(line, "misses") > 0 and numbers(line, "hits") == 0
    assert (cache / "CACHEDIR.TAG").is_file()

    again = project.runpytest()
    again.assert_outcomes(passed=6)
    (line,) = cache_lines(again.stdout.str())
    assert line.startswith("tcav cache: computed nothing; disk: ")
    assert numbers(line, "misses") == 0 and numbers(line, "written") == 0 and numbers(line, "hits") > 0
    assert summary_section(again.stdout.str()) == summary_section(first.stdout.str())

    read_only = project.runpytest("--tcav-cache=read", "--tcav-cache-dir=elsewhere")
    read_only.assert_outcomes(passed=6)
    assert numbers(cache_lines(read_only.stdout.str())[0], "written") == 0
    assert not (project.path / "elsewhere").exists()

    off = project.runpytest("--tcav-cache=off")
    (line,) = cache_lines(off.stdout.str())
    assert line.endswith("; disk cache off") and not line.startswith("tcav cache: computed nothing")

    cleared = project.runpytest("--tcav-clear-cache", "-k", "test_horizontal_relu")
    cleared.assert_outcomes(passed=1)
    (line,) = cache_lines(cleared.stdout.str())
    assert numbers(line, "hits") == 0 and numbers(line, "written") > 0
    entries = [p for p in cache.rglob("*.tcav")]
    assert 0 < len(entries) < written  # only what the one test needed


# -- pytest-xdist ----------------------------------------------------------------------------


def run_counted(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, name: str,
                *args: str) -> tuple[pytest.RunResult, dict[str, int], dict[str, Any]]:
    """A subprocess run with its own fresh cache; returns the run, computations summed over processes, records."""
    counts, dumps = project.mkdir(f"{name}-counts"), project.mkdir(f"{name}-records")
    monkeypatch.setenv("COUNT_DIR", str(counts))
    monkeypatch.setenv("DUMP_DIR", str(dumps))
    result = project.runpytest_subprocess(f"--tcav-cache-dir={name}-cache", *args)
    total: dict[str, int] = {}
    files = sorted(counts.iterdir())
    for file in files:
        for kind, count in json.loads(file.read_text()).items():
            total[kind] = total.get(kind, 0) + count
    records = {f.name: [{k: v for k, v in r.items() if k != "seq"} for r in json.loads(f.read_text())]
               for f in sorted(dumps.iterdir())}
    return result, total, {"files": [f.name for f in files], "records": records}


@pytest.mark.slow  # runs pytest
def test_xdist_workers_compute_each_shared_value_once(project: pytest.Pytester,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    project.path.joinpath("conftest.py").write_text(project.path.joinpath("conftest.py").read_text()
                                                    + COUNTS_CONFTEST)
    monkeypatch.setenv("TINY_TORCH_THREADS", "1")
    # When this suite itself runs under pytest-xdist, the inner serial run must not look like a worker.
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    serial, serial_total, serial_info = run_counted(project, monkeypatch, "serial")
    serial.assert_outcomes(passed=6)
    assert serial_info["files"] == ["serial.json"]
    # 2 layers x (3 concepts + 5 random sets) activations; gradients for target 1 at 2 layers and
    # target 0 at one; per layer 5 CAVs for each of the 3 concepts plus the 10 random pairs' CAVs, shared.
    assert serial_total == {"activations": 16, "gradients": 3, "cav": 2 * (3 * 5 + 10)}

    parallel, parallel_total, parallel_info = run_counted(project, monkeypatch, "parallel", "-n", "2")
    parallel.assert_outcomes(passed=6)
    assert "2 workers" in parallel.stdout.str()
    assert parallel_info["files"] == ["gw0.json", "gw1.json"]  # both workers tested concepts
    assert parallel_total == serial_total  # nothing computed twice across the workers
    # The same verdicts and every number bit for bit, and the same table and cache line.
    assert parallel_info["records"] == serial_info["records"] and len(serial_info["records"]) == 6
    assert summary_section(parallel.stdout.str()) == summary_section(serial.stdout.str())
    (serial_line,) = cache_lines(serial.stdout.str())
    (parallel_line,) = cache_lines(parallel.stdout.str())
    assert serial_line.split("; disk")[0] == parallel_line.split("; disk")[0]
    assert numbers(parallel_line, "written") == numbers(serial_line, "written")


# -- work shared between concepts ------------------------------------------------------------


class CountingTrainer(HingeSGDTrainer):
    """The default trainer, counting the CAVs it trains per feature width (one width per layer here)."""

    def __init__(self) -> None:
        super().__init__()
        self.trained = 0

    def train_sets(self, load, sizes, pairs, seeds, **options):
        self.trained += len(pairs)
        return super().train_sets(load, sizes, pairs, seeds, **options)

    def taken(self) -> int:
        """CAVs trained since the last call."""
        count, self.trained = self.trained, 0
        return count


@pytest.mark.slow  # over a second
def test_a_second_concept_trains_only_its_own_cavs(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(3)
    randoms = [tiny_model.noise(12, gen) for _ in range(6)]
    horizontal, vertical = tiny_model.stripes(12, gen), tiny_model.stripes(12, gen, vertical=True)
    inputs = tiny_model.stripes(16, gen)
    kwargs = dict(target=1, inputs=inputs, layers=["conv", "relu"], random_sets=randoms)

    trainer = CountingTrainer()
    store = MemoryStore(backend=DiskStore(tmp_path))
    engine = TCAV(tiny_model.EdgeNet(), trainer=trainer, store=store)
    first = engine.test(horizontal, **kwargs)
    assert trainer.taken() == 2 * (6 + 15)  # per layer: 6 concept CAVs and the 15 random pairs' CAVs
    engine.test(vertical, **kwargs)
    assert trainer.taken() == 2 * 6  # the random-set null is reused: only the concept's own CAVs
    assert store.computed["activations"] == 2 * 8 and store.computed["gradients"] == 2

    # A new process (new engine, new memory store, warm disk): nothing is trained or run again.
    trainer, store = CountingTrainer(), MemoryStore(backend=DiskStore(tmp_path))
    again = TCAV(tiny_model.EdgeNet(), trainer=trainer, store=store).test(horizontal, **kwargs)
    assert trainer.taken() == 0 and sum(store.computed.values()) == 0
    assert again == first


# -- devices ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("worker", "count", "expected"), [
    (None, 4, "cuda"), ("gw0", 4, "cuda:0"), ("gw1", 4, "cuda:1"), ("gw5", 4, "cuda:1"), ("gw7", 2, "cuda:1"),
    ("gw3", 1, "cuda"), ("master", 4, "cuda"),
])
def test_xdist_worker_k_uses_gpu_k_mod_count(monkeypatch: pytest.MonkeyPatch, worker: str | None, count: int,
                                             expected: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    if worker is None:
        monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    else:
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
    assert default_device() == torch.device(expected)
    assert TCAVSession().device == torch.device(expected)
    assert TCAVSession(TCAVConfig(device="cuda:3")).device == torch.device("cuda:3")  # tcav_device wins
    assert TCAVSession(TCAVConfig(device="cpu")).device == torch.device("cpu")


def test_no_gpu_means_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    assert default_device() == torch.device("cpu")


@pytest.mark.slow  # runs pytest
def test_the_cache_is_cleared_in_the_controller_only(pytester: pytest.Pytester,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_tcav import plugin

    cleared: list[Path] = []
    monkeypatch.setattr(plugin, "clear_cache", lambda folder: cleared.append(folder) or 0)
    for worker in (False, True):
        config = pytester.parseconfig("--tcav-clear-cache", "--tcav-cache-dir=somewhere")
        if worker:
            config.workerinput = {"workerid": "gw0"}  # type: ignore[attr-defined]
        plugin.pytest_configure(config)
        plugin.pytest_unconfigure(config)
    assert cleared == [pytester.path / "somewhere"]  # the controller (or a serial run) only

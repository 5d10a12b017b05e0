"""A concept suite serially and under pytest-xdist: wall times, where the time goes, identical results.

The suite: four concept tests (``--concepts``) on a torchvision ResNet-18 (random weights from
``resnet18(weights=None)``, seeded, nothing downloaded), each testing its own
concept against the same ten random sets, inputs and layers, so that most of
the work (the random sets' activations and the CAVs between them) is shared.
It is written into a fresh folder and run with ``python -m pytest`` in a
subprocess, with an empty disk cache each time:

* serially;
* with ``-n 2`` (and ``-n 4`` where the machine has at least 8 cores).

Printed per run: wall time, its ratio to the serial run, and where each
process spent its time (start-up until its first test, the tests, waits on the
disk cache's locks, values computed), from a probe in the suite's conftest.
The runs' JSON reports (``--tcav-json``) must hold the same results, and the
values computed by all workers together must be those of the serial run (no
work done twice).

    python benchmarks/xdist_threads.py [--images 20] [--inputs 20] [--size 224] [--concepts 4] [--workers 2,4]
                                        [--eager-imports] [--quick] [--json]

Torch's threads are left to pytest-tcav (``tcav_threads = auto``); pass
``--threads N`` to set ``tcav_threads`` instead.

The conftest imports torch and torchvision in its fixtures, as docs/scaling.md
advises for suites run under xdist: xdist's controller imports every
conftest but runs no test, and workers start only after it has.  With
``--eager-imports`` they are imported at the conftest's top level instead, and
the controller spends torch's import time (~3 s here) before any worker starts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_common import machine, print_json

HERE = Path(__file__).resolve().parent
LAYERS = ["layer3", "layer4"]
TARGET = 3

CONFTEST = '''
import json, os, time

import pytest

SIZE = {size}
WAIT = {{"seconds": 0.0, "locks": 0, "busy": 0}}
FIRST = {{}}
IMPORTS = {{}}
{eager}

def _setup():
    """torch, torchvision and the lock-wait probe, on first use (in a worker, not in xdist's controller)."""
    if "probe" in IMPORTS:
        return
    start = time.time()
    import torch
    import torchvision

    from pytest_tcav.storage import disk

    IMPORTS.setdefault("start", start)
    IMPORTS.setdefault("end", time.time())
    IMPORTS["probe"] = True
    take = disk.DiskStore._take

    def timed_take(self, lock, path, wait):
        begin = time.perf_counter()
        taken = "failed"
        try:
            taken = take(self, lock, path, wait)
            return taken
        finally:
            WAIT["seconds"] += time.perf_counter() - begin
            WAIT["locks"] += 1
            WAIT["busy"] += taken == "busy"

    disk.DiskStore._take = timed_take


def images(seed, count):
    _setup()
    import torch

    return torch.rand((count, 3, SIZE, SIZE), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="session")
def model():
    _setup()
    import torch
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval()


@pytest.fixture(scope="session")
def random_sets():
    return [images(100 + k, {images}) for k in range({random_sets})]


@pytest.fixture(scope="session")
def inputs():
    return images(7, {inputs})


def _process_start():
    """When this process started (Linux), else None."""
    try:
        with open("/proc/self/stat") as handle:
            ticks = int(handle.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as handle:
            boot = next(int(line.split()[1]) for line in handle if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def pytest_runtest_setup(item):
    FIRST.setdefault("start", time.time())


def pytest_sessionfinish(session):
    if "start" not in FIRST:
        return  # the xdist controller runs no test
    from pytest_tcav.plugin.stash import HANDLE_KEY

    import torch

    handle = session.config.stash[HANDLE_KEY]
    stats = handle.get().cache_stats() if handle.built else {{}}
    name = os.environ.get("PYTEST_XDIST_WORKER", "serial")
    record = {{"process_start": _process_start(), "torch_import_s": IMPORTS["end"] - IMPORTS["start"],
              "first_test": FIRST["start"], "end": time.time(), "lock_wait_s": WAIT["seconds"],
              "locks": WAIT["locks"],
              "busy": WAIT["busy"], "computed": stats.get("computed", {{}}), "threads": torch.get_num_threads()}}
    with open(os.path.join(os.environ["PROBE_DIR"], name + ".json"), "w") as handle:
        json.dump(record, handle)
'''

TESTS = '''
import pytest

from pytest_tcav import assert_concept_significant
from conftest import images

LAYERS = {layers!r}


@pytest.mark.parametrize("k", range({concepts}))
def test_concept(model, random_sets, inputs, k):
    assert_concept_significant(model, images(10 + k, {images}), target={target}, inputs=inputs, layers=LAYERS,
                               random_sets=random_sets)
'''


#: ``--eager-imports``: torch imported at the conftest's top level, so xdist's controller imports it too
EAGER = "IMPORTS['start'] = time.time()\nimport torch\nimport torchvision\nIMPORTS['end'] = time.time()\n"


def write_suite(folder: Path, *, images: int, inputs: int, size: int, random_sets: int,
                threads: int | None, concepts: int = 4, eager_imports: bool = False) -> None:
    """The suite's files: conftest (data, model, probe), the concept tests, an ini file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "conftest.py").write_text(CONFTEST.format(size=size, images=images, inputs=inputs,
                                                        random_sets=random_sets, eager=EAGER if eager_imports else ""))
    (folder / "test_concepts.py").write_text(TESTS.format(layers=LAYERS, concepts=concepts, images=images,
                                                          target=TARGET))
    ini = "[pytest]\ntcav_cache_dir = tcav-cache\n"
    if threads:
        ini += f"tcav_threads = {threads}\n"
    (folder / "pytest.ini").write_text(ini)


def run_suite(folder: Path, workers: int, *, fresh: bool = True, concepts: int = 4) -> dict[str, Any]:
    """One run in a new process (on an empty cache unless ``fresh=False``): wall time, results, each probe."""
    name = "serial" if workers == 0 else f"n{workers}"
    if fresh:
        shutil.rmtree(folder / "tcav-cache", ignore_errors=True)
    probes = folder / f"probe-{name}"
    shutil.rmtree(probes, ignore_errors=True)
    probes.mkdir()
    report = folder / f"report-{name}.json"
    # hypothesis's pytest plugin (a test dependency of this repository) spends about 1.5 s in every process's
    # terminal summary; it is no part of a concept suite, so both runs leave it out
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:hypothesispytest",
               f"--tcav-json={report}"]
    if workers:
        command += ["-p", "xdist", "-n", str(workers)]
    env = {**os.environ, "PROBE_DIR": str(probes)}
    for variable in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_ADDOPTS"):
        env.pop(variable, None)
    launched = time.time()
    start = time.perf_counter()
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode not in (0, 1) or not report.exists():  # 1: a concept check failed (random weights)
        raise RuntimeError(f"{name} run failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    processes = {}
    for path in sorted(probes.iterdir()):
        probe = json.loads(path.read_text())
        started = probe["process_start"] if probe["process_start"] is not None else launched
        processes[path.stem] = {
            "started_after_s": round(max(0.0, started - launched), 3),
            "startup_s": round(probe["first_test"] - started, 3),  # interpreter, pytest, torch, collection
            "torch_import_s": round(probe["torch_import_s"], 3),
            "tests_s": round(probe["end"] - probe["first_test"], 3),
            "lock_wait_s": round(probe["lock_wait_s"], 3),
            "locks": probe["locks"],
            "busy": probe.get("busy", 0),
            "computed": probe["computed"],
            "threads": probe["threads"],
        }
    checks = json.loads(report.read_text())["checks"]
    if len(checks) != concepts:  # an error before the checks (too few images...), not a verdict
        raise RuntimeError(f"{name} run made {len(checks)} checks, not {concepts}:\n{done.stdout[-3000:]}")
    results = [(c["id"], c.get("outcome"), c.get("results")) for c in checks]
    cache_line = next((line.strip(" -") for line in done.stdout.splitlines() if "tcav cache:" in line), None)
    return {"name": name, "workers": workers, "wall_s": wall, "exit": done.returncode,
            "processes": processes, "results": results, "cache_line": cache_line}


def total_computed(run: dict[str, Any]) -> dict[str, int]:
    total: dict[str, int] = {}
    for process in run["processes"].values():
        for kind, count in process["computed"].items():
            total[kind] = total.get(kind, 0) + count
    return total


def run(*, images: int = 20, inputs: int = 20, size: int = 224, random_sets: int = 10, concepts: int = 4,
        workers: list[int] | None = None, threads: int | None = None, folder: Path | None = None,
        eager_imports: bool = False) -> dict[str, Any]:
    """Serial and parallel runs of the suite; raises if their results differ or work was done twice."""
    if workers is None:
        workers = [2] + ([4] if (os.cpu_count() or 1) >= 8 else [])
    own = folder is None
    folder = Path(tempfile.mkdtemp(prefix="tcav-xdist-")) if folder is None else folder
    try:
        write_suite(folder, images=images, inputs=inputs, size=size, random_sets=random_sets, threads=threads,
                    concepts=concepts, eager_imports=eager_imports)
        runs = [run_suite(folder, 0, concepts=concepts)] + [run_suite(folder, n, concepts=concepts) for n in workers]
    finally:
        if own:
            shutil.rmtree(folder, ignore_errors=True)
    serial = runs[0]
    for other in runs[1:]:
        if other["results"] != serial["results"]:
            raise RuntimeError(f"results of {other['name']} differ from the serial run's")
        if total_computed(other) != total_computed(serial):
            raise RuntimeError(f"{other['name']} computed {total_computed(other)}, the serial run "
                               f"{total_computed(serial)}: work done twice")
        other["ratio_to_serial"] = other["wall_s"] / serial["wall_s"]
    for r in runs:
        r["computed"] = total_computed(r)
        r["checks"] = len(r.pop("results"))
    return {"benchmark": "xdist_threads", "images": images, "inputs": inputs, "size": size,
            "random_sets": random_sets, "layers": LAYERS, "concepts": concepts, "tcav_threads": threads or "auto",
            "conftest_imports": "eager" if eager_imports else "lazy",
            "runs": runs, "machine": machine()}


def report(r: dict[str, Any]) -> None:
    print(f"suite: {r['concepts']} concept tests, ResNet-18 (random weights) at {r['size']} px, layers "
          f"{', '.join(r['layers'])}, {r['random_sets']} shared random sets of {r['images']} images, "
          f"{r['inputs']} inputs; fresh cache per run; tcav_threads = {r['tcav_threads']}; torch imported "
          f"{'at the conftest top' if r['conftest_imports'] == 'eager' else 'in fixtures'}; "
          f"{r['machine']['cores']} cores, load average {r['machine']['load_average']}")
    for run_ in r["runs"]:
        ratio = f"   {run_['ratio_to_serial']:.2f}x serial" if "ratio_to_serial" in run_ else ""
        print(f"{run_['name']:>7}: {run_['wall_s']:7.2f} s{ratio}   (results identical; computed {run_['computed']})")
        for name, p in run_["processes"].items():
            print(f"         {name:>6}: {p['threads']} threads, started +{p['started_after_s']:.1f} s, start-up "
                  f"{p['startup_s']:.1f} s (torch {p['torch_import_s']:.1f} s), tests {p['tests_s']:.1f} s, "
                  f"lock waits {p['lock_wait_s']:.1f} s over {p['locks']} locks, "
                  f"{p.get('busy', 0)} found busy and left for later")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20, help="images per concept and random set")
    parser.add_argument("--inputs", type=int, default=20)
    parser.add_argument("--size", type=int, default=224, help="image side in pixels")
    parser.add_argument("--random-sets", type=int, default=10)
    parser.add_argument("--concepts", type=int, default=4, help="concept tests in the suite")
    parser.add_argument("--workers", default=None, help="comma-separated -n values (default: 2, and 4 on >= 8 cores)")
    parser.add_argument("--threads", type=int, default=None, help="tcav_threads (default: auto)")
    parser.add_argument("--eager-imports", action="store_true",
                        help="import torch at the conftest's top level (xdist's controller then imports it too)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (5 images, 2 inputs, 32 px): a smoke test")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line too")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.inputs, args.size = 5, 2, 32
    workers = [int(n) for n in args.workers.split(",")] if args.workers else None
    record = run(images=args.images, inputs=args.inputs, size=args.size, random_sets=args.random_sets,
                 concepts=args.concepts, workers=workers, threads=args.threads, eager_imports=args.eager_imports)
    report(record)
    if args.json:
        print_json(record)
    return 0


if __name__ == "__main__":
    sys.exit(main())

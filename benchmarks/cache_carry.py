"""A warm cache carried from one clone to another by ``pytest-tcav cache export`` / ``import``.

What a CI pipeline does between two jobs on fresh machines: clone A runs a
small concept suite (the suite of ``xdist_threads.py``: four concept tests on
a ResNet-18 with random weights, shared random sets) on an empty cache and
exports the cache to one archive; clone B, a fresh copy of the same suite
with no cache, imports the archive and runs the suite.  B must compute
nothing (its probe's counts, and the run's ``tcav cache:`` line) and report
the same results as A.

    python benchmarks/cache_carry.py [--images 10] [--inputs 10] [--size 64] [--random-sets 10] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_common import machine, print_json
from xdist_threads import run_suite, total_computed, write_suite


def command(folder: Path, *args: str) -> tuple[float, str]:
    """``pytest-tcav ARGS`` in ``folder``; its wall time and output line."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest_tcav", *args], cwd=folder, capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"pytest-tcav {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return time.perf_counter() - start, done.stdout.strip()


def run(*, images: int = 10, inputs: int = 10, size: int = 64, random_sets: int = 10,
        folder: Path | None = None) -> dict[str, Any]:
    """Clone A computes and exports; fresh clone B imports and runs; raises unless B computed nothing."""
    own = folder is None
    folder = Path(tempfile.mkdtemp(prefix="tcav-carry-")) if folder is None else folder
    try:
        a, b, artifact = folder / "clone-a", folder / "clone-b", folder / "artifact" / "tcav-cache.tar"
        for clone in (a, b):
            write_suite(clone, images=images, inputs=inputs, size=size, random_sets=random_sets, threads=None)
        first = run_suite(a, 0)
        export_s, exported = command(a, "cache", "export", str(artifact))
        import_s, imported = command(b, "cache", "import", str(artifact))
        carried = run_suite(b, 0, fresh=False)
        artifact_bytes = artifact.stat().st_size
    finally:
        if own:
            shutil.rmtree(folder, ignore_errors=True)
    if carried["results"] != first["results"]:
        raise RuntimeError("clone B's results differ from clone A's")
    if any(total_computed(carried).values()):
        raise RuntimeError(f"clone B computed {total_computed(carried)} after importing the cache")
    return {
        "benchmark": "cache_carry", "images": images, "inputs": inputs, "size": size, "random_sets": random_sets,
        "a_wall_s": first["wall_s"], "a_computed": total_computed(first), "a_cache_line": first["cache_line"],
        "export_s": export_s, "export": exported, "artifact_bytes": artifact_bytes,
        "import_s": import_s, "import": imported,
        "b_wall_s": carried["wall_s"], "b_computed": total_computed(carried), "b_cache_line": carried["cache_line"],
        "checks": len(first["results"]), "machine": machine(),
    }


def report(r: dict[str, Any]) -> None:
    print(f"suite: 4 concept tests, ResNet-18 (random weights) at {r['size']} px, {r['random_sets']} shared random "
          f"sets of {r['images']} images, {r['inputs']} inputs; {r['machine']['cores']} cores, load average "
          f"{r['machine']['load_average']}")
    print(f"clone A, empty cache   {r['a_wall_s']:7.2f} s   {r['a_cache_line']}")
    print(f"export                 {r['export_s']:7.2f} s   {r['export']}")
    print(f"import (fresh clone B) {r['import_s']:7.2f} s   {r['import']}")
    print(f"clone B, imported      {r['b_wall_s']:7.2f} s   {r['b_cache_line']}")
    print(f"clone B computed nothing; its {r['checks']} checks' results are clone A's")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10, help="images per concept and random set")
    parser.add_argument("--inputs", type=int, default=10)
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--random-sets", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (5 images, 2 inputs, 32 px): a smoke test")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line too")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.inputs, args.size = 5, 2, 32
    record = run(images=args.images, inputs=args.inputs, size=args.size, random_sets=args.random_sets)
    report(record)
    if args.json:
        print_json(record)
    return 0


if __name__ == "__main__":
    os.environ.pop("PYTEST_XDIST_WORKER", None)
    sys.exit(main())

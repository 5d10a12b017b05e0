"""What the plugin costs a pytest run that tests no concept: import time and the modules it loads.

pytest imports ``pytest_tcav.plugin`` in every run of every project where
pytest-tcav is installed, so its import must stay light (docs/architecture.md).
This script measures, each in fresh processes (``--repeat`` of each, minimum and
median reported):

* ``import pytest_tcav.plugin`` after ``import pytest``, and which heavy libraries
  (torch, numpy, scipy, scikit-learn, yaml, matplotlib) that loads;
* a whole pytest run of one plain test, with the plugin and with ``-p no:tcav``,
  and their ratio (what installing pytest-tcav adds to a run without concept tests);
* ``import pytest_tcav.cli.diff`` with what ``pytest-tcav diff`` imports to compare
  two reports (it needs no torch).

    python benchmarks/import_cost.py [--repeat 15] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HEAVY = ("torch", "numpy", "scipy", "sklearn", "yaml", "matplotlib")

_IMPORT = """
import sys, time
import pytest
start = time.perf_counter()
import {module}
{extra}
elapsed = time.perf_counter() - start
heavy = sorted(name for name in {heavy!r} if name in sys.modules)
print(elapsed, ",".join(heavy) or "-")
"""

_DIFF_IMPORTS = ("import pytest_tcav.checks.stability, pytest_tcav.engine.statistics, "
                 "pytest_tcav.reports.diff, pytest_tcav.cli.stored")


def _summary(times: list[float]) -> dict[str, float]:
    return {"min_ms": 1000 * min(times), "median_ms": 1000 * statistics.median(times)}


def import_time(module: str, repeat: int, extra: str = "") -> dict[str, Any]:
    """Seconds to import ``module`` (pytest already imported) in ``repeat`` fresh processes."""
    code = _IMPORT.format(module=module, extra=extra, heavy=HEAVY)
    times, loaded = [], "-"
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
        times.append(float(out[0]))
        loaded = out[1]
    return {**_summary(times), "heavy_loaded": [] if loaded == "-" else loaded.split(",")}


def pytest_run_time(repeat: int) -> dict[str, Any]:
    """Wall time of a pytest run of one plain test, with the plugin and without it (``-p no:tcav``)."""
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "test_plain.py").write_text("def test_plain():\n    assert True\n")
        env = {**os.environ, "PYTEST_ADDOPTS": ""}
        results: dict[str, list[float]] = {"with_plugin": [], "without_plugin": []}
        for _ in range(repeat):
            for label, extra in (("with_plugin", []), ("without_plugin", ["-p", "no:tcav"])):
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra],
                               cwd=folder, env=env, capture_output=True, check=True)
                results[label].append(time.perf_counter() - start)
    with_plugin, without = _summary(results["with_plugin"]), _summary(results["without_plugin"])
    return {"with_plugin": with_plugin, "without_plugin": without,
            "ratio_median": with_plugin["median_ms"] / without["median_ms"]}


def run(repeat: int = 15) -> dict[str, Any]:
    return {
        "plugin_import": import_time("pytest_tcav.plugin", repeat),
        "diff_import": import_time("pytest_tcav.cli.diff", repeat, extra=_DIFF_IMPORTS),
        "pytest_run": pytest_run_time(repeat),
        "repeat": repeat,
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "python": sys.version.split()[0],
    }


def report(record: dict[str, Any]) -> None:
    plugin, diff, run_ = record["plugin_import"], record["diff_import"], record["pytest_run"]
    print(f"import pytest_tcav.plugin     {plugin['min_ms']:7.1f} ms min, {plugin['median_ms']:7.1f} ms median; "
          f"heavy libraries loaded: {', '.join(plugin['heavy_loaded']) or 'none'}")
    print(f"pytest-tcav diff's imports    {diff['min_ms']:7.1f} ms min, {diff['median_ms']:7.1f} ms median; "
          f"heavy libraries loaded: {', '.join(diff['heavy_loaded']) or 'none'}")
    print(f"pytest run, one plain test    {run_['with_plugin']['median_ms']:7.1f} ms with the plugin, "
          f"{run_['without_plugin']['median_ms']:7.1f} ms with -p no:tcav (medians): "
          f"{run_['ratio_median']:.2f}x")
    print(f"({record['repeat']} fresh processes each; load average {record['load_average']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15, help="fresh processes per measurement (default 15)")
    parser.add_argument("--quick", action="store_true", help="2 processes each: a smoke test")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of the table")
    args = parser.parse_args()
    record = run(repeat=2 if args.quick else args.repeat)
    print(json.dumps(record)) if args.json else report(record)


if __name__ == "__main__":
    main()

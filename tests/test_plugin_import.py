"""Importing the plugin stays light: pytest imports it in every run of every project where it is installed."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "numpy", "scipy", "sklearn", "yaml")


def test_importing_the_plugin_loads_no_heavy_module() -> None:
    code = f"import sys, pytest_tcav.plugin; print(sorted(name for name in {HEAVY!r} if name in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr

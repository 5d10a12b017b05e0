"""Importing the plugin stays light: pytest imports it in every run of every project where it is installed."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "numpy", "scipy", "sklearn", "yaml", "matplotlib")


def test_importing_the_plugin_loads_no_heavy_module() -> None:
    code = f"import sys, pytest_tcav.plugin; print(sorted(name for name in {HEAVY!r} if name in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


@pytest.mark.slow  # runs pytest
def test_a_run_without_concept_tests_loads_no_heavy_module(pytester: pytest.Pytester) -> None:
    # A whole run (collection, the baseline account, the terminal summary), not just the import.
    pytester.makepyfile(test_plain=f"""
        import sys

        def test_plain():
            assert 1 + 1 == 2

        def test_nothing_heavy_is_loaded():
            assert sorted(name for name in {HEAVY!r} if name in sys.modules) == []
    """)
    pytester.makefile(".yaml", notes="a: 1")  # a YAML file that is not a concept test
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:hypothesispytest")
    result.assert_outcomes(passed=2)

"""Tests of pytest_tcav.plugin: the pytest glue as users meet it (pytester runs)."""

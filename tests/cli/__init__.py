"""Tests of pytest_tcav.cli: the pytest-tcav command."""

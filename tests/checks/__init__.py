"""Tests of pytest_tcav.checks: baselines and their files, declarative YAML specs, unsafe names and files."""

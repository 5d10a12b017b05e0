"""pytest glue for pytest-tcav (loaded through the ``pytest11`` entry point)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "tcav: a concept test (TCAV); deselect with -m 'not tcav'")

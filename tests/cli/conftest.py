"""Fixtures of the command-line tests: a tiny project to run ``pytest-tcav`` in."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.helpers import tiny_model


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with tiny_model.py and its concept and input libraries (no training: instant to score)."""
    root = tmp_path_factory.mktemp("cli")
    (root / "tiny_model.py").write_text(Path(tiny_model.__file__).read_text())
    tiny_model.write_library(root / "data", n_random=5)
    return root


@pytest.fixture
def in_project(tiny_project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run ``cli.main`` in-process from the project folder; sys.path is restored afterwards."""
    monkeypatch.chdir(tiny_project)
    monkeypatch.setattr(sys, "path", list(sys.path))
    return tiny_project
